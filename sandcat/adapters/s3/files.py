"""Objects in S3 / MinIO: the files bucket and the avatars bucket."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from miniopy_async.api import Minio
from miniopy_async.error import MinioException, S3Error

from sandcat.config import OssConfig
from sandcat.errors import DbError
from sandcat.log import get_logger
from sandcat.ports import OBJECT_CHUNK_BYTES, ObjectStream

log = get_logger(__name__)

#: The key rule of ``LocalFileStore`` (the file-store contract tests hold both to it).
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9]{1,16})?$")
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}
_EXISTS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}

#: Says whether a message or a user still references ``(bucket, key)``.
Referenced = Callable[[str, str], Awaitable[bool]]


@contextmanager
def _s3_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (MinioException, aiohttp.ClientError, OSError) as exc:
        log.warning("s3_error", operation=operation, error=repr(exc))
        raise DbError("the file store is unavailable") from exc


class S3FileStore:
    """Implements ``FileStore``; ``start`` creates the configured buckets, ``close`` ends
    the HTTP session. Path-style addressing, so any host name works as the endpoint."""

    def __init__(self, *, config: OssConfig) -> None:
        endpoint = urlsplit(
            config.endpoint if "://" in config.endpoint else "http://" + config.endpoint
        )
        self._client = Minio(
            endpoint.netloc,
            access_key=config.access_key or None,
            secret_key=config.secret_key or None,
            secure=endpoint.scheme == "https",
            region=config.region,
        )
        self._client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        self.buckets = (config.bucket, config.avatar_bucket)

    async def start(self) -> None:
        for bucket in self.buckets:
            with _s3_errors("make_bucket"):
                if await self._client.bucket_exists(bucket):
                    continue
                try:
                    await self._client.make_bucket(bucket)
                except S3Error as exc:  # another process created it meanwhile
                    if exc.code not in _EXISTS:
                        raise

    async def ping(self) -> None:
        """Ask whether the first bucket exists (readiness: S3 answers); raises otherwise."""
        with _s3_errors("bucket_exists"):
            if not await self._client.bucket_exists(self.buckets[0]):
                raise RuntimeError(f"bucket {self.buckets[0]} is missing")

    async def close(self) -> None:
        await self._client.close_session()  # type: ignore[no-untyped-call]

    async def put_object(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        if not _KEY.match(key):
            raise ValueError(f"invalid object key {key!r}")
        with _s3_errors("put_object"):
            await self._client.put_object(
                bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )

    async def open_object(self, bucket: str, key: str) -> ObjectStream | None:
        if not _KEY.match(key):
            return None
        with _s3_errors("get_object"):
            try:
                response = await self._client.get_object(bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                raise

        async def chunks() -> AsyncGenerator[bytes, None]:
            try:
                with _s3_errors("get_object"):
                    async for chunk in response.content.iter_chunked(OBJECT_CHUNK_BYTES):
                        yield chunk
            finally:
                response.release()

        return ObjectStream(int(response.headers.get("Content-Length", "0")), chunks())

    async def has_object(self, bucket: str, key: str) -> bool:
        if not _KEY.match(key):
            return False
        with _s3_errors("has_object"):
            try:
                await self._client.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return False
                raise
        return True

    async def clean_orphans(self, referenced: Referenced, older_than_ms: int) -> int:
        """Delete the objects of both buckets last modified before ``older_than_ms`` (the
        caller's clock minus the grace period) that ``referenced(bucket, key)`` says nothing
        uses; returns how many were deleted.

        The predicate decides alone: it must also answer True for the default avatars.
        """
        cutoff = datetime.fromtimestamp(older_than_ms / 1000, UTC)
        removed = 0
        for bucket in self.buckets:
            with _s3_errors("list_objects"):
                old = [
                    obj.object_name
                    async for obj in self._client.list_objects(bucket, recursive=True)
                    if obj.object_name and obj.last_modified and obj.last_modified < cutoff
                ]
            for key in old:
                if await referenced(bucket, key):
                    continue
                with _s3_errors("remove_object"):
                    await self._client.remove_object(bucket, key)
                removed += 1
                log.info("orphan_file_removed", bucket=bucket, key=key)
        return removed
