"""The selector: which twin each hot path uses, ``SANDCAT_NO_EXTENSIONS`` and the fallback,
and that every compiled function it exports has a caller in the server."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sandcat import _native
from tests.native.conftest import CYTHON, RUST

ROOT = Path(__file__).resolve().parents[2]
SANDCAT = Path(sys.executable).parent / "sandcat"
PACKAGE = ROOT / "sandcat"
#: What the selector exports besides the hot-path functions.
NOT_HOT_PATHS = {"DISTRIBUTED_ONLY", "NO_EXTENSIONS", "implementations"}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SANDCAT")}
    return subprocess.run(
        args, env={**base, **env}, capture_output=True, text=True, check=True, cwd=ROOT
    )


def test_implementations_name_every_hot_path() -> None:
    expected = {
        "framing": "cython" if CYTHON is not None else "python",
        "shard hashing": "rust" if RUST is not None else "python",
    }
    assert _native.implementations() == expected
    for name in sorted(set(_native.__all__) - NOT_HOT_PATHS):
        compiled = CYTHON if hasattr(CYTHON, name) else RUST
        if compiled is not None:
            assert getattr(_native, name) is getattr(compiled, name), name


def test_info_without_extensions_says_python() -> None:
    out = run([str(SANDCAT), "info"], SANDCAT_NO_EXTENSIONS="1").stdout
    assert out.endswith("\nframing: python\nshard hashing: python (not called in embedded mode)\n")


def test_info_with_extensions_names_them() -> None:
    # ``run`` drops every SANDCAT* variable, so this checks the build in both passes.
    out = run([str(SANDCAT), "info"]).stdout
    assert out.endswith("\nframing: cython\nshard hashing: rust (not called in embedded mode)\n")


def test_info_in_distributed_mode_names_the_shard_hashing_in_use() -> None:
    secret = "0123456789abcdef0123456789abcdef"
    out = run(
        [str(SANDCAT), "info"], SANDCAT__MODE="distributed", SANDCAT__SERVER__JWT_SECRET=secret
    ).stdout
    assert out.endswith("\nframing: cython\nshard hashing: rust\n")


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
    assert done.stdout == "['python', 'python']\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "native_extension_unavailable_using_pure_python" in lines[0]


def test_no_extensions_is_silent() -> None:
    code = "from sandcat import _native; print(_native.NO_EXTENSIONS)"
    done = run([sys.executable, "-c", code], SANDCAT_NO_EXTENSIONS="1")
    assert (done.stdout, done.stderr) == ("True\n", "")


def _server_uses() -> set[str]:
    """Every selector name the server's code (``sandcat/`` outside ``sandcat/_native``) uses:
    ``_native.NAME`` after ``from sandcat import _native``, or ``from sandcat._native import
    NAME``. Parsed, so a mention in a comment or docstring is no use."""
    used: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if (PACKAGE / "_native") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "sandcat._native":
                used.update(alias.name for alias in node.names)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "_native"
            ):
                used.add(node.attr)
    return used


def test_every_exported_hot_path_function_has_a_server_caller() -> None:
    unused = set(_native.__all__) - NOT_HOT_PATHS - _server_uses()
    assert not unused, f"exported by sandcat._native but called nowhere in the server: {unused}"


def _functions(module: ModuleType) -> set[str]:
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and callable(getattr(module, name))
        and not isinstance(getattr(module, name), type)
    }


@pytest.mark.parametrize("name", ["sandcat._native._framing", "sandcat_native"])
def test_compiled_modules_hold_only_exported_functions(name: str) -> None:
    """A compiled function the selector does not export would be built and tested for nothing.

    Checked in both passes: the built module is imported here directly, whatever the
    selector was told by ``SANDCAT_NO_EXTENSIONS``."""
    module = importlib.import_module(name)
    assert _functions(module) <= set(_native.__all__)
