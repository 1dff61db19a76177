"""``/file/*`` routes: uploads need a token, downloads do not (the client uses ``<img>``)."""

from __future__ import annotations

from contextlib import aclosing

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from sandcat.api.common import Handler, body_read, path_param
from sandcat.api.users import UserRoutes
from sandcat.errors import BodyParsing, PayloadTooLarge
from sandcat.services.files import OCTET_STREAM, FileService

_CHUNK = 1 << 16


class FileRoutes:
    def __init__(self, *, files: FileService, auth: UserRoutes, upload_limit: int) -> None:
        self._files = files
        self._auth = auth
        self._limit = upload_limit

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/file/upload", self.upload),
            ("POST", "/file/avatar/upload", self.upload_avatar),
            ("GET", "/file/get/{name}", self.get),
            ("GET", "/file/avatar/get/{name}", self.get_avatar),
        ]

    async def _upload(self, request: web.Request, bucket: str) -> web.StreamResponse:
        await self._auth.authed(request)
        if request.content_length is not None and request.content_length > self._limit + 65536:
            raise PayloadTooLarge(f"uploads are limited to {self._limit} bytes")
        try:
            filename, content_type, data = await self._read_file_part(request)
        except (AssertionError, ValueError, KeyError, HttpProcessingError) as exc:
            # A header line too long, a missing boundary, a body that ends too early.
            raise BodyParsing(f"malformed multipart/form-data body: {exc}") from exc
        key = await self._files.upload(bucket, filename, data, content_type)
        return web.Response(text=key, content_type="text/plain")

    async def _read_file_part(self, request: web.Request) -> tuple[str | None, str, bytes]:
        """The ``file`` field of a complete multipart body: its name, type and bytes. A body
        cut before its closing boundary is refused, never stored as a shorter file."""
        reader = await request.multipart()
        part = await body_read(request, reader.next())
        while part is not None and not (isinstance(part, BodyPartReader) and part.name == "file"):
            part = await body_read(request, reader.next())
        if part is None:
            raise BodyParsing("multipart field `file` is missing")
        data = bytearray()
        while chunk := await body_read(request, part.read_chunk(_CHUNK)):
            data += chunk
            if len(data) > self._limit:
                raise PayloadTooLarge(f"uploads are limited to {self._limit} bytes")
        if not part.at_eof():
            raise BodyParsing("the multipart body ends inside the file")
        while (rest := await body_read(request, reader.next())) is not None:
            await body_read(request, rest.release())
        if not reader.at_eof():
            raise BodyParsing("the multipart body has no closing boundary")
        return part.filename, part.headers.get("Content-Type", ""), bytes(data)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        return await self._upload(request, self._files.bucket)

    async def upload_avatar(self, request: web.Request) -> web.StreamResponse:
        return await self._upload(request, self._files.avatar_bucket)

    async def _get(self, request: web.Request, bucket: str) -> web.StreamResponse:
        name = path_param(request, "name")
        stream, content_type = await self._files.download(bucket, name)
        headers = {
            "Cache-Control": "private, max-age=31536000",
            "X-Content-Type-Options": "nosniff",
            # Even opened directly, a file is a sandboxed document with no script or fetch.
            "Content-Security-Policy": "default-src 'none'; sandbox",
        }
        if content_type == OCTET_STREAM:
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        # Streamed: one chunk in memory per download, and a reader that stops reading
        # holds back only its own writes (each waits for the socket to drain).
        async with aclosing(stream.chunks) as chunks:
            response = web.StreamResponse(headers=headers)
            response.content_type = content_type
            response.content_length = stream.size
            await response.prepare(request)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        return response

    async def get(self, request: web.Request) -> web.StreamResponse:
        return await self._get(request, self._files.bucket)

    async def get_avatar(self, request: web.Request) -> web.StreamResponse:
        return await self._get(request, self._files.avatar_bucket)
