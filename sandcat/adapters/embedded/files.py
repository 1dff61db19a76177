"""A local-folder object store: ``<root>/<bucket>/<key>``."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncGenerator
from pathlib import Path

from sandcat.ports import OBJECT_CHUNK_BYTES, ObjectStream

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9]{1,16})?$")


class LocalFileStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    def _path(self, bucket: str, key: str) -> Path | None:
        if not _KEY.match(key):
            return None
        return self._root / bucket / key

    async def put_object(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        path = self._path(bucket, key)
        if path is None:
            raise ValueError(f"invalid object key {key!r}")

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        await asyncio.to_thread(write)

    async def open_object(self, bucket: str, key: str) -> ObjectStream | None:
        path = self._path(bucket, key)
        if path is None:
            return None
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError):
            return None

        async def chunks() -> AsyncGenerator[bytes, None]:
            try:
                while chunk := await asyncio.to_thread(file.read, OBJECT_CHUNK_BYTES):
                    yield chunk
            finally:
                file.close()

        return ObjectStream(os.fstat(file.fileno()).st_size, chunks())

    async def has_object(self, bucket: str, key: str) -> bool:
        path = self._path(bucket, key)
        return path is not None and await asyncio.to_thread(path.is_file)
