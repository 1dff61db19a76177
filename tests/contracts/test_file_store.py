"""``FileStore``: the local folder (embedded) and S3 behave alike; S3's own extras."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from miniopy_async.api import Minio

from sandcat.adapters.embedded.files import LocalFileStore
from sandcat.adapters.s3.files import S3FileStore
from sandcat.config import OssConfig
from sandcat.errors import DbError
from sandcat.ports import OBJECT_CHUNK_BYTES, FileStore

#: The buckets every test writes to (the S3 store creates them at start).
BUCKETS = ("files", "avatars")
INVALID_KEYS = ("", "../etc", "a/b", "a b.png", "x" * 65, "a.b.c", "é.png", ".png")


async def read_object(store: FileStore, bucket: str, key: str) -> bytes | None:
    """The whole object through ``open_object``, checking the stream's size and chunks."""
    stream = await store.open_object(bucket, key)
    if stream is None:
        return None
    chunks = [chunk async for chunk in stream.chunks]
    assert all(0 < len(chunk) <= OBJECT_CHUNK_BYTES for chunk in chunks)
    data = b"".join(chunks)
    assert len(data) == stream.size
    return data


@pytest.fixture
async def s3_store(oss_config: OssConfig) -> AsyncIterator[S3FileStore]:
    store = S3FileStore(config=oss_config)
    await store.start()
    yield store
    await store.close()


@pytest.fixture(params=["local", "s3"])
def store_and_buckets(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[FileStore, tuple[str, str]]:
    if request.param == "local":
        return LocalFileStore(tmp_path / "files"), BUCKETS
    s3: S3FileStore = request.getfixturevalue("s3_store")
    return s3, s3.buckets


async def test_put_then_get_and_has(store_and_buckets: tuple[FileStore, tuple[str, str]]) -> None:
    store, (files, avatars) = store_and_buckets
    data = bytes(range(256)) * 1000
    await store.put_object(files, "V1StGXR8_Z5jdHi6B-myT.png", data, "image/png")
    assert await read_object(store, files, "V1StGXR8_Z5jdHi6B-myT.png") == data
    assert await store.has_object(files, "V1StGXR8_Z5jdHi6B-myT.png")
    # buckets are separate namespaces
    assert not await store.has_object(avatars, "V1StGXR8_Z5jdHi6B-myT.png")
    assert await read_object(store, avatars, "V1StGXR8_Z5jdHi6B-myT.png") is None


async def test_put_overwrites(store_and_buckets: tuple[FileStore, tuple[str, str]]) -> None:
    store, (files, _) = store_and_buckets
    await store.put_object(files, "key", b"old", "text/plain")
    await store.put_object(files, "key", b"new!", "text/plain")
    assert await read_object(store, files, "key") == b"new!"


async def test_an_empty_object_is_kept(
    store_and_buckets: tuple[FileStore, tuple[str, str]],
) -> None:
    store, (files, _) = store_and_buckets
    await store.put_object(files, "empty.txt", b"", "text/plain")
    assert await store.has_object(files, "empty.txt")
    assert await read_object(store, files, "empty.txt") == b""


async def test_a_missing_object_is_none(
    store_and_buckets: tuple[FileStore, tuple[str, str]],
) -> None:
    store, (files, _) = store_and_buckets
    assert await read_object(store, files, "nothing-here.png") is None
    assert not await store.has_object(files, "nothing-here.png")
    assert await read_object(store, "no-such-bucket-at-all", "avatar1.png") is None
    assert not await store.has_object("no-such-bucket-at-all", "avatar1.png")


async def test_invalid_keys_are_refused(
    store_and_buckets: tuple[FileStore, tuple[str, str]],
) -> None:
    store, (files, _) = store_and_buckets
    for key in INVALID_KEYS:
        with pytest.raises(ValueError, match="invalid object key"):
            await store.put_object(files, key, b"x", "text/plain")
        assert await read_object(store, files, key) is None
        assert not await store.has_object(files, key)


def _raw_client(config: OssConfig) -> Minio:
    return Minio(
        urlsplit(config.endpoint).netloc,
        access_key=config.access_key,
        secret_key=config.secret_key,
        secure=False,
        region=config.region,
    )


async def test_s3_creates_buckets_once_and_keeps_content_types(oss_config: OssConfig) -> None:
    first, second = S3FileStore(config=oss_config), S3FileStore(config=oss_config)
    raw = _raw_client(oss_config)
    try:
        await first.start()
        await second.start()  # the buckets exist already: no error
        for bucket in (oss_config.bucket, oss_config.avatar_bucket):
            assert await raw.bucket_exists(bucket)
        await first.put_object(oss_config.bucket, "voice.mp3", b"ID3", "audio/mpeg")
        stat = await raw.stat_object(oss_config.bucket, "voice.mp3")
        assert stat.content_type == "audio/mpeg"
    finally:
        await first.close()
        await second.close()
        await raw.close_session()  # type: ignore[no-untyped-call]


async def test_s3_errors_become_db_errors(oss_config: OssConfig) -> None:
    store = S3FileStore(config=OssConfig(**{**_fields(oss_config), "secret_key": "wrong"}))
    try:
        with pytest.raises(DbError):
            await store.start()
    finally:
        await store.close()


def _fields(config: OssConfig) -> dict[str, str]:
    return {
        "endpoint": config.endpoint,
        "access_key": config.access_key,
        "secret_key": config.secret_key,
        "bucket": config.bucket,
        "avatar_bucket": config.avatar_bucket,
        "region": config.region,
    }


async def _modified_ms(raw: Minio, bucket: str, key: str) -> int:
    stat = await raw.stat_object(bucket, key)
    assert stat.last_modified is not None
    return int(stat.last_modified.timestamp() * 1000)


async def test_clean_orphans_deletes_old_unreferenced_objects_only(
    s3_store: S3FileStore, oss_config: OssConfig
) -> None:
    """Age is judged against the cutoff the caller passes (its clock minus the grace), so the
    test sets the cutoff exactly between the objects' own S3 timestamps (whole seconds)."""
    files, avatars = s3_store.buckets
    for key in ("old-orphan.png", "old-used.png", "avatar1.png"):
        await s3_store.put_object(
            files if key != "avatar1.png" else avatars, key, b"x", "image/png"
        )
    raw = _raw_client(oss_config)
    try:
        old = [
            await _modified_ms(raw, files, "old-orphan.png"),
            await _modified_ms(raw, files, "old-used.png"),
            await _modified_ms(raw, avatars, "avatar1.png"),
        ]
        async with asyncio.timeout(10):  # until the server's clock shows a later second
            while True:
                await s3_store.put_object(files, "young-orphan.png", b"x", "image/png")
                young_ms = await _modified_ms(raw, files, "young-orphan.png")
                if young_ms > max(old):
                    break
                await asyncio.sleep(0.05)
    finally:
        await raw.close_session()  # type: ignore[no-untyped-call]
    asked: list[tuple[str, str]] = []

    async def referenced(bucket: str, key: str) -> bool:
        asked.append((bucket, key))
        return key in {"old-used.png", "avatar1.png"}

    assert await s3_store.clean_orphans(referenced, older_than_ms=min(old)) == 0
    assert asked == []  # nothing is old enough to ask about
    assert await s3_store.clean_orphans(referenced, older_than_ms=young_ms) == 1
    assert sorted(asked) == sorted(
        [(files, "old-orphan.png"), (files, "old-used.png"), (avatars, "avatar1.png")]
    )
    assert not await s3_store.has_object(files, "old-orphan.png")
    for bucket, key in (
        (files, "old-used.png"),
        (files, "young-orphan.png"),
        (avatars, "avatar1.png"),
    ):
        assert await s3_store.has_object(bucket, key)


async def test_objects_are_read_in_bounded_chunks(
    store_and_buckets: tuple[FileStore, tuple[str, str]],
) -> None:
    store, (files, _) = store_and_buckets
    data = bytes(range(256)) * (OBJECT_CHUNK_BYTES // 256 * 3 + 7)  # 3 chunks and a bit
    await store.put_object(files, "big.bin", data, "application/octet-stream")
    assert await read_object(store, files, "big.bin") == data
    stream = await store.open_object(files, "big.bin")
    assert stream is not None
    first = await anext(stream.chunks)  # a reader that stops early releases the source
    assert len(first) <= OBJECT_CHUNK_BYTES
    await stream.chunks.aclose()
