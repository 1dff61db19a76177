"""``impl`` fixtures: one parameter per available implementation of each hot path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from sandcat import _native
from sandcat._native import framing, shard
from sandcat.protocol import bincode, payloads
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import ReadPayload


@dataclass(frozen=True, slots=True)
class Framing:
    name: str
    encode_msg: Callable[[Msg], bytes]
    decode_msg: Callable[[bytes], Msg]
    encode_fanout: Callable[[Msg, Iterable[int]], list[bytes]]
    encode_strings: Callable[[list[str]], bytes]
    decode_read: Callable[[bytes], ReadPayload]


def _compiled(name: str) -> ModuleType | None:
    """The compiled twin, or None in the deliberate pure pass (``SANDCAT_NO_EXTENSIONS=1``).

    Otherwise a missing build is an error, not a silently shorter parametrisation:
    ``make test`` builds both extensions before it runs the suite.
    """
    if _native.NO_EXTENSIONS:
        return None
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(f"{name} is not built: run `make install` (or `make native`)") from exc


def _framing(name: str, module: Any) -> Framing:
    return Framing(
        name,
        module.encode_msg,
        module.decode_msg,
        module.encode_fanout,
        module.encode_strings,
        module.decode_read,
    )


PY_FRAMING = Framing(
    "python",
    bincode.encode_msg,
    bincode.decode_msg,
    framing.encode_fanout,
    payloads.encode_strings,
    framing.decode_read,
)
CYTHON = _compiled("sandcat._native._framing")
RUST = _compiled("sandcat_native")

FRAMINGS = [PY_FRAMING] + ([_framing("cython", CYTHON)] if CYTHON is not None else [])
SHARDS: list[ModuleType] = [shard] + ([RUST] if RUST is not None else [])


def _id(value: Any) -> str:
    if isinstance(value, Framing):
        return value.name
    return "rust" if value is RUST else "python"


@pytest.fixture(params=FRAMINGS, ids=_id)
def impl(request: pytest.FixtureRequest) -> Framing:
    """Every available framing implementation (the reference first)."""
    value: Framing = request.param
    return value


@pytest.fixture(params=SHARDS, ids=_id)
def shard_impl(request: pytest.FixtureRequest) -> Any:
    """Every available shard-hashing implementation (a module with the twin's API)."""
    return request.param
