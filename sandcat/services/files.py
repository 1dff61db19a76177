"""Uploads and downloads: unguessable keys, only a sanitised extension from the client."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from sandcat.errors import BadRequest, NotFound
from sandcat.ids import nanoid
from sandcat.ports import FileStore, ObjectStream

DEFAULT_AVATARS = ("avatar1.png", "avatar2.png", "avatar3.png")
#: Types a browser may render inline from the API's own origin: images, audio and video,
#: but never a type that runs script there (SVG and XML documents do).
_INLINE_MAJOR = ("image/", "audio/", "video/")
_NEVER_INLINE = frozenset({"image/svg+xml"})
OCTET_STREAM = "application/octet-stream"
_EXT = re.compile(r"^[A-Za-z0-9]{1,10}$")


def object_key(filename: str | None) -> str:
    """``nanoid`` plus ``.ext`` when the client's file name has a plain extension."""
    key = nanoid()
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[1]
        if _EXT.match(ext):
            key += "." + ext.lower()
    return key


class FileService:
    def __init__(self, *, store: FileStore, bucket: str, avatar_bucket: str) -> None:
        self._store = store
        self.bucket = bucket
        self.avatar_bucket = avatar_bucket

    async def ensure_default_avatars(self, assets: Path) -> None:
        for name in DEFAULT_AVATARS:
            if not await self._store.has_object(self.avatar_bucket, name):
                await self._store.put_object(
                    self.avatar_bucket, name, (assets / name).read_bytes(), "image/png"
                )

    async def upload(
        self, bucket: str, filename: str | None, data: bytes, content_type: str
    ) -> str:
        if not data:
            raise BadRequest("the uploaded file is empty")
        key = object_key(filename)
        await self._store.put_object(bucket, key, data, content_type or "application/octet-stream")
        return key

    async def download(self, bucket: str, key: str) -> tuple[ObjectStream, str]:
        """The object, streamed, and the type to serve it as: its media type when a browser
        may show it inline, else ``application/octet-stream`` (served as an attachment)."""
        stream = await self._store.open_object(bucket, key)
        if stream is None:
            raise NotFound("no such file")
        return stream, served_type(key)


def served_type(key: str) -> str:
    """Uploads are served from the API's origin, where the web client keeps its tokens:
    HTML, SVG, XML or anything else that could run script there goes out as bytes to save."""
    guessed = mimetypes.guess_type(key)[0] or OCTET_STREAM
    if guessed.startswith(_INLINE_MAJOR) and guessed not in _NEVER_INLINE:
        return guessed
    return OCTET_STREAM
