"""The dependency direction of docs/architecture.md, checked on the source.

Services, ports, domain and wire formats never import a web framework or a driver; only
adapters, edges and the composition root do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sandcat"
DRIVERS = (
    "aiohttp",
    "asyncpg",
    "pymongo",
    "aiokafka",
    "redis",
    "miniopy_async",
    "aiosmtplib",
    "sqlite3",
)
INNER = sorted(
    [
        *PACKAGE.glob("services/*.py"),
        *PACKAGE.glob("protocol/*.py"),
        PACKAGE / "ports.py",
        PACKAGE / "domain.py",
        PACKAGE / "domain_records.py",
    ]
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", INNER, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_inner_layers_import_no_driver(path: Path) -> None:
    bad = {m for m in _imports(path) if m.split(".")[0] in DRIVERS}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", INNER, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_inner_layers_do_not_reach_outwards(path: Path) -> None:
    outward = (
        "sandcat.adapters",
        "sandcat.api",
        "sandcat.gateway",
        "sandcat.composition",
        "sandcat.distributed",
        "sandcat.cli",
        "sandcat.server",
    )
    bad = {m for m in _imports(path) if m.startswith(outward)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
