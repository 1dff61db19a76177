"""A local-folder object store: ``<root>/<bucket>/<key>``."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

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

    async def get_object(self, bucket: str, key: str) -> bytes | None:
        path = self._path(bucket, key)
        if path is None:
            return None

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                return None

        return await asyncio.to_thread(read)

    async def has_object(self, bucket: str, key: str) -> bool:
        path = self._path(bucket, key)
        return path is not None and await asyncio.to_thread(path.is_file)
