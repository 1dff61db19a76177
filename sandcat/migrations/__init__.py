"""The numbered schema migrations, shipped inside the package (a wheel install has them).

``sqlite/`` is the embedded database's, ``postgres/`` the distributed one's; each adapter
applies the files of its folder not yet recorded in its ``schema_migrations`` table, in
name order. ``SANDCAT_MIGRATIONS_DIR`` points at another folder with the same layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The folder holding ``sqlite/`` and ``postgres/``.
MIGRATIONS_DIR = Path(os.environ.get("SANDCAT_MIGRATIONS_DIR") or Path(__file__).parent)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")


def migration_files(folder: Path) -> list[Path]:
    """The numbered ``NNNN_name.sql`` files of ``folder``, in the order they apply."""
    return sorted(f for f in folder.glob("*.sql") if _MIGRATION_NAME.match(f.name))
