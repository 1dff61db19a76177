"""The embedded server's control socket: how ``sandcat users ...`` and ``sandcat connections
...`` reach a running server.

The embedded server caches what it alone writes (token generations among them), so an
admin command that changed the database behind its back would not be seen. Instead the
server listens on ``control.sock``, a Unix socket in its data folder, mode 0600: only the
account that runs the server (or root) can connect, and nothing of it is reachable over
the network. One JSON line in (``{"op": ..., "args": {...}}``), one JSON line out
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``), then the
connection closes. The server asks the kernel which OS user connected (``SO_PEERCRED``)
and hands it to the handler, so the audit line names who ran the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from sandcat.errors import SandcatError
from sandcat.log import get_logger

log = get_logger(__name__)

SOCKET_NAME = "control.sock"
#: ``sun_path`` holds 108 bytes on Linux, the terminating NUL included.
MAX_PATH_BYTES = 107
#: A request or a reply (a user list page) fits in this.
LINE_LIMIT = 4 * 1024 * 1024

#: ``handler(op, args, os_user)``: ``os_user`` is the account that ran the command.
Handler = Callable[[str, dict[str, Any], str], Awaitable[Any]]


class ControlUnavailable(RuntimeError):
    """No server answers on the control socket."""


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number when the system has no name for it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def local_user() -> str:
    """The OS user running this process."""
    return user_name(os.getuid())


def _peer_user(writer: asyncio.StreamWriter) -> str:
    """The OS user at the other end of a Unix socket, as the kernel reports it (Linux's
    ``SO_PEERCRED``; ``?`` where the platform has no such option)."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return "?"
    size = struct.calcsize("3i")
    _pid, uid, _gid = struct.unpack(
        "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    )
    return user_name(uid)


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


def _fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= MAX_PATH_BYTES


@contextlib.asynccontextmanager
async def serving(data_dir: Path, handler: Handler) -> AsyncIterator[Path | None]:
    """Listen on ``data_dir/control.sock`` while the block runs. The caller holds the data
    folder's lock, so a socket file left there is a dead server's and is replaced. Yields
    the path, or None when it is too long for a Unix socket (logged; admin commands then
    say so)."""
    path = socket_path(data_dir)
    if not _fits(path):
        log.warning("control_socket_unavailable", path=str(path), reason="path too long")
        yield None
        return

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await _answer(await reader.readline(), handler, _peer_user(writer))
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent more than a line: nothing to answer
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(on_client, path=str(path), limit=LINE_LIMIT)
    os.chmod(path, 0o600)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()
        path.unlink(missing_ok=True)


async def _answer(line: bytes, handler: Handler, os_user: str) -> dict[str, Any]:
    try:
        request = json.loads(line)
        op = request["op"]
        args = request.get("args") or {}
        if not isinstance(op, str) or not isinstance(args, dict):
            raise TypeError("op must be a string and args a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": f"bad request: {exc}"}
    try:
        return {"ok": True, "result": await handler(op, args, os_user)}
    except SandcatError as exc:
        return {"ok": False, "error": str(exc)}


async def request(data_dir: Path, op: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
    """Send one request to the server holding ``data_dir``; raises ``ControlUnavailable``
    when none listens, ``SandcatError`` with the server's message when it refuses."""
    path = socket_path(data_dir)
    if not _fits(path):
        raise ControlUnavailable(f"{path} is too long for a Unix socket")
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlUnavailable(str(exc)) from exc
    try:
        writer.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ControlUnavailable(f"the server on {path} closed the connection")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise SandcatError(str(reply.get("error")))
    return reply.get("result")
