"""The service provisioner (``scripts/provision``) stays standard-library only: CI runs it
before any project dependency is installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scripts" / "provision"


def test_the_provisioner_imports_only_the_standard_library() -> None:
    outside: list[str] = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            top = {name.partition(".")[0] for name in names}
            outside += [f"{path.name}: {name}" for name in top - sys.stdlib_module_names]
    assert outside == [] and len(list(PACKAGE.glob("*.py"))) >= 8


def test_its_command_line_runs_without_site_packages(tmp_path: Path) -> None:
    """``-I -S``: no site-packages, no PYTHONPATH, no user site, as on a bare CI image."""
    script = ROOT / "scripts" / "services.py"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script), "status", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "no services in this run dir\n", "")
