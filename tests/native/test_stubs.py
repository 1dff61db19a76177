"""The ``.pyi`` stubs of the compiled twins match them (``mypy.stubtest``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).resolve().parents[2] / "native" / "rust" / "stubtest-allowlist.txt"
#: Checked in both passes: stubtest imports the built modules itself, whatever the selector
#: was told by ``SANDCAT_NO_EXTENSIONS``.
MODULES = ["sandcat._native._framing", "sandcat_native"]
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
