"""The selector: which twin each hot path uses, ``SANDCAT_NO_EXTENSIONS`` and the fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandcat import _native
from tests.native.conftest import CYTHON, RUST

ROOT = Path(__file__).resolve().parents[2]
SANDCAT = Path(sys.executable).parent / "sandcat"


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SANDCAT")}
    return subprocess.run(
        args, env={**base, **env}, capture_output=True, text=True, check=True, cwd=ROOT
    )


def test_implementations_name_every_hot_path() -> None:
    expected = {
        "framing": "cython" if CYTHON is not None else "python",
        "shard hashing": "rust" if RUST is not None else "python",
        "fan-out batching": "rust" if RUST is not None else "python",
    }
    assert _native.implementations() == expected
    assert _native.encode_msg is (CYTHON.encode_msg if CYTHON is not None else _native.encode_msg)
    if RUST is not None:
        assert _native.plan_fanout is RUST.plan_fanout


def test_info_without_extensions_says_python() -> None:
    out = run([str(SANDCAT), "info"], SANDCAT_NO_EXTENSIONS="1").stdout
    for path in ("framing", "shard hashing", "fan-out batching"):
        assert f"\n{path}: python\n" in out


def test_info_with_extensions_names_them() -> None:
    # ``run`` drops every SANDCAT* variable, so this checks the build in both passes.
    out = run([str(SANDCAT), "info"]).stdout
    assert "\nframing: cython\nshard hashing: rust\nfan-out batching: rust\n" in out


def test_missing_extensions_fall_back_with_one_warning_line() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name in ("sandcat._native._framing", "sandcat_native"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
from sandcat import _native
print(sorted(_native.implementations().values()))
"""
    done = run([sys.executable, "-c", code])
    assert done.stdout == "['python', 'python', 'python']\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "native_extension_unavailable_using_pure_python" in lines[0]


def test_no_extensions_is_silent() -> None:
    code = "from sandcat import _native; print(_native.NO_EXTENSIONS)"
    done = run([sys.executable, "-c", code], SANDCAT_NO_EXTENSIONS="1")
    assert (done.stdout, done.stderr) == ("True\n", "")
