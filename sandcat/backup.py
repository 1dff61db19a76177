"""``sandcat backup PATH`` and ``sandcat restore PATH`` (embedded mode), and what to back up
in distributed mode.

An embedded data folder holds ``sandcat.db`` (with its write-ahead log: copying the file of a
running server copies none of what the log still holds), ``files/`` (uploads and avatars)
and ``jwt_secret`` (when the config sets none). The backup copies the database through
SQLite's online backup API: one read transaction, so the copy is the database at one
instant, while the server keeps writing. The files are copied after it: an upload comes
before the message that names it, so every file the copied messages name is there. The
backup folder is 0700, its files 0600 (it holds password hashes and every message).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from sandcat import __version__
from sandcat.adapters.embedded.sqlite import apply_migrations, lock_data_dir
from sandcat.config import Config

DB_NAME = "sandcat.db"
FILES_DIR = "files"
SECRET_NAME = "jwt_secret"
MANIFEST = "BACKUP.json"


class BackupError(RuntimeError):
    """The backup or restore cannot be made; the message says why."""


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _copy_private(src: Path, dst: Path) -> None:
    """Copy one file, created 0600 before a byte is written."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, src.open("rb") as source:
        shutil.copyfileobj(source, out)
    os.chmod(dst, 0o600)


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy a folder (folders 0700, files 0600); returns the number of files."""
    count = 0
    _private_dir(dst)
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        for name in dirs:
            _private_dir(dst / rel / name)
        for name in files:
            _copy_private(Path(root) / name, dst / rel / name)
            count += 1
    return count


def _sqlite_copy(src: Path, dst: Path) -> None:
    """The whole of ``src`` into ``dst`` in one backup step (one consistent snapshot)."""
    if not dst.exists():
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600))
    source = sqlite3.connect(src)
    target = sqlite3.connect(dst)
    try:
        source.execute("PRAGMA busy_timeout=5000")
        source.backup(target)
        check = target.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy of {src} fails SQLite's check: {check}")
    finally:
        target.close()
        source.close()


def backup_embedded(config: Config, dest: Path) -> dict[str, Any]:
    """Copy the data folder of ``config`` to ``dest`` (a new or empty folder)."""
    data_dir = Path(config.embedded.data_dir)
    db = data_dir / DB_NAME
    if not db.exists():
        raise BackupError(f"no database at {db} (check embedded.data_dir)")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: give a new folder")
    _private_dir(dest)
    started = time.time()
    _sqlite_copy(db, dest / DB_NAME)
    files = (
        _copy_tree(data_dir / FILES_DIR, dest / FILES_DIR) if (data_dir / FILES_DIR).is_dir() else 0
    )
    secret = data_dir / SECRET_NAME
    if secret.exists():
        _copy_private(secret, dest / SECRET_NAME)
    manifest = {
        "sandcat": __version__,
        "source": str(data_dir.resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "database": DB_NAME,
        "files": files,
        "jwt_secret": secret.exists(),
    }
    fd = os.open(dest / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=1)
    return manifest


def restore_embedded(config: Config, src: Path, *, force: bool = False) -> dict[str, Any]:
    """Put the backup at ``src`` into ``config``'s data folder. Refused while a server holds
    the folder (its lock), and over an existing database unless ``force``."""
    if not (src / MANIFEST).exists() or not (src / DB_NAME).exists():
        raise BackupError(f"{src} is not a sandcat backup (no {MANIFEST} or {DB_NAME})")
    manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    data_dir = Path(config.embedded.data_dir)
    _private_dir(data_dir)
    fd = lock_data_dir(data_dir)  # DataDirBusy names the running server's pid
    try:
        db = data_dir / DB_NAME
        if db.exists() and not force:
            raise BackupError(f"{db} exists: restore into a new folder, or pass --force")
        # Through SQLite, not a file copy: a write-ahead log left beside the old database
        # is replaced with it instead of being replayed over the restored one.
        _sqlite_copy(src / DB_NAME, db)
        if (data_dir / FILES_DIR).exists() and force:
            shutil.rmtree(data_dir / FILES_DIR)
        if (src / FILES_DIR).is_dir():
            _copy_tree(src / FILES_DIR, data_dir / FILES_DIR)
        if (src / SECRET_NAME).exists():
            _copy_private(src / SECRET_NAME, data_dir / SECRET_NAME)
        apply_migrations(str(db))  # a backup of an older release is brought up to date
    finally:
        os.close(fd)
    return manifest


def distributed_plan(config: Config) -> str:
    """What to back up in distributed mode, per service, with the commands (no secret)."""
    pg = config.db.postgres
    mongo = config.db.mongodb
    oss = config.oss
    return f"""Distributed mode: Sandcat keeps no state of its own; back up each service.

PostgreSQL ({pg.host}:{pg.port}, database {pg.database}) - users, friendships, groups,
  sequence segments, idempotency keys, message history. The source of truth: back it up first.
    pg_dump -h {pg.host} -p {pg.port} -U {pg.user} -Fc -f sandcat.pgdump {pg.database}
  restore: pg_restore -h HOST -U {pg.user} -d {pg.database} --clean sandcat.pgdump
MongoDB ({mongo.host}:{mongo.port}, database {mongo.database}) - the inbox (per-user copies).
    mongodump --host {mongo.host} --port {mongo.port} --db {mongo.database} --archive=inbox.archive
  restore: mongorestore --host HOST --drop --archive=inbox.archive
S3 ({oss.endpoint}, buckets {oss.bucket} and {oss.avatar_bucket}) - uploads and avatars.
    aws s3 sync s3://{oss.bucket} ./{oss.bucket} --endpoint-url {oss.endpoint}
    aws s3 sync s3://{oss.avatar_bucket} ./{oss.avatar_bucket} --endpoint-url {oss.endpoint}
  restore: the same with source and target swapped
Redis ({config.redis.host}:{config.redis.port}) - nothing to back up: sequences restart from the
  segments in PostgreSQL, codes and presence are short-lived.
Kafka ({", ".join(config.kafka.hosts)}, topic {config.kafka.topic}) - messages in flight only:
  stop the gateways, let the msg-server drain the topic, then take the backups above.
The JWT secret (server.jwt_secret / SANDCAT__SERVER__JWT_SECRET): keep it with the backup,
  or every token issued before a restore is refused (users log in again).
"""
