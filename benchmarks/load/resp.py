"""A minimal Redis (RESP2) client: enough to read registration codes, nothing more."""

from __future__ import annotations

import asyncio


class RedisError(RuntimeError):
    pass


Reply = bytes | int | str | None | list["Reply"]


class Redis:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, host: str, port: int) -> Redis:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @staticmethod
    def pack(*args: str) -> bytes:
        out = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            raw = arg.encode()
            out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
        return b"".join(out)

    async def _read(self) -> Reply:
        line = (await self._reader.readline()).rstrip(b"\r\n")
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = await self._reader.readexactly(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [await self._read() for _ in range(count)]
        raise RedisError(f"unexpected reply {line[:40]!r}")

    async def command(self, *args: str) -> Reply:
        async with self._lock:
            self._writer.write(self.pack(*args))
            await self._writer.drain()
            return await self._read()

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()
