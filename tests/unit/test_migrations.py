"""The schema migrations ship inside the package and both adapters find them one way."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

from sandcat.adapters.embedded.sqlite import apply_migrations
from sandcat.adapters.postgres.migrate import apply_pg_migrations
from sandcat.migrations import MIGRATIONS_DIR, migration_files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sandcat"


def test_both_adapters_default_to_the_package_folders() -> None:
    assert MIGRATIONS_DIR == PACKAGE / "migrations"
    for apply, engine in ((apply_migrations, "sqlite"), (apply_pg_migrations, "postgres")):
        default = inspect.signature(apply).parameters["migrations_dir"].default
        assert default == MIGRATIONS_DIR / engine
        assert [f.name for f in migration_files(default)][:1] == ["0001_init.sql"]


def test_every_migration_is_package_data_and_none_is_left_outside() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["sandcat"]
    scripts = sorted(PACKAGE.glob("migrations/**/*.sql"))
    assert len(scripts) >= 2
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    assert set(scripts) <= shipped
    assert not list((ROOT / "migrations").glob("**/*.sql")), "migrations live in sandcat/"


def test_migration_files_are_the_numbered_ones_in_order(tmp_path: Path) -> None:
    for name in ("0002_b.sql", "0001_a.sql", "notes.sql", "0003_c.txt", "12_short.sql"):
        (tmp_path / name).write_text("")
    assert [f.name for f in migration_files(tmp_path)] == ["0001_a.sql", "0002_b.sql"]
