"""The ``.pyi`` stubs of the compiled twins match them (``mypy.stubtest``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.native.conftest import CYTHON, RUST

ALLOWLIST = Path(__file__).resolve().parents[2] / "native" / "rust" / "stubtest-allowlist.txt"
MODULES = [
    pytest.param(module, marks=pytest.mark.skipif(loaded is None, reason="not built"))
    for module, loaded in (("sandcat._native._framing", CYTHON), ("sandcat_native", RUST))
]
#: maturin wraps the compiled Rust module in a package (see the allowlist).
OPTIONS = {"sandcat_native": ["--allowlist", str(ALLOWLIST)]}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("module", MODULES)
def test_stubs_match_the_compiled_module(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *OPTIONS.get(module, []), module],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
