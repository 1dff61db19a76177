"""The dependency direction of docs/architecture.md, checked on the source.

Services, ports, domain and wire formats never import a web framework or a driver; only
adapters, edges and the composition root do. No module of the package imports itself back
through others (at module level or inside a function).
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
        *PACKAGE.glob("util/*.py"),
        PACKAGE / "migrations" / "__init__.py",
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
        "sandcat.wiring",
        "sandcat.embedded",
        "sandcat.distributed",
        "sandcat.admin",
        "sandcat.cli",
        "sandcat.server",
    )
    bad = {m for m in _imports(path) if m.startswith(outward)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.glob("util/*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_util_knows_nothing_of_sandcat(path: Path) -> None:
    bad = {m for m in _imports(path) if m.split(".")[0] == "sandcat"}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.glob("jobs/*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_jobs_driving_an_adapter_live_beside_it(path: Path) -> None:
    bad = {m for m in _imports(path) if m.startswith("sandcat.adapters")}
    bad |= {m for m in _imports(path) if m.split(".")[0] in DRIVERS}
    assert not bad, f"{path.name} imports {sorted(bad)}: move it under sandcat/adapters/"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Import nodes under ``if TYPE_CHECKING:`` (never run)."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(n for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _import_graph() -> dict[str, set[str]]:
    """``module -> the package's modules it imports`` (anywhere in it: a cycle through a
    function-level import is still a cycle), plus each module's package ``__init__``
    unless that ``__init__`` imports the module itself."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_only(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if node in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in paths and t != name}
    for name in paths:
        parent = name.rpartition(".")[0]
        if parent in paths and name not in graph[parent]:
            graph[name].add(parent)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    graph = _import_graph()
    assert {"sandcat.composition", "sandcat.wiring", "sandcat.embedded"} <= graph.keys()
    assert "sandcat.wiring" in graph["sandcat.distributed"]
    assert _cycles(graph) == []


@pytest.mark.parametrize("mode", ["sandcat.embedded", "sandcat.distributed"])
def test_each_mode_stands_alone(mode: str) -> None:
    """A mode's module reaches neither the other mode nor the root nor an edge's app;
    ``wiring`` reaches no mode, no root and no app."""
    graph = _import_graph()
    banned = {
        "sandcat.composition",
        "sandcat.api.app",
        "sandcat.gateway.app",
        *({"sandcat.embedded", "sandcat.distributed"} - {mode}),
    }
    assert not graph[mode] & banned
    assert not graph["sandcat.wiring"] & (banned | {mode})


def test_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
