"""An embedded database made by an earlier release keeps every message through the upgrade
to the store-once layout (``sandcat/migrations/sqlite/0004_messages_once.sql``)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from sandcat.adapters.embedded.messages import SqliteInbox
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations
from sandcat.migrations import MIGRATIONS_DIR

FAT_ROW = (
    "INSERT INTO inbox (owner_id, box, seq, other_seq, send_id, receiver_id, local_id, "
    "server_id, create_time, send_time, msg_type, content_type, content, is_read, group_id, "
    "related_msg_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _migrated_before(tmp_path: Path, version: str) -> tuple[str, list[str], list[str]]:
    """A database of the SQLite migrations older than ``version``: its path, the scripts
    ``apply_migrations`` reports and the scripts it was given."""
    before = tmp_path / "before"
    before.mkdir()
    for script in sorted((MIGRATIONS_DIR / "sqlite").glob("*.sql")):
        if script.name < version:
            shutil.copy(script, before / script.name)
    path = str(tmp_path / "old.db")
    applied = apply_migrations(path, before)
    return path, applied, sorted(p.name for p in before.glob("*.sql"))


async def test_the_store_once_migration_keeps_every_copy(tmp_path: Path) -> None:
    path, applied, copied = _migrated_before(tmp_path, "0004")
    assert applied == copied
    with sqlite3.connect(path) as conn:
        # alice -> bob one-to-one (alice's send_seq 1, bob's seq 1, read), and a group
        # message from bob to carol and alice (bob's send_seq 1; group copies carry 0).
        conn.executemany(
            FAT_ROW,
            [
                ("alice", 1, 1, 0, "alice", "bob", "l1", "s1", 9, 10, 0, 1, b"hi", 0, "", None),
                ("bob", 0, 1, 1, "alice", "bob", "l1", "s1", 9, 10, 0, 1, b"hi", 1, "", None),
                ("bob", 1, 1, 0, "bob", "g", "l2", "s2", 19, 20, 1, 1, b"all", 0, "g", "r"),
                ("carol", 0, 1, 0, "bob", "g", "l2", "s2", 19, 20, 1, 1, b"all", 0, "g", "r"),
                ("alice", 0, 1, 0, "bob", "g", "l2", "s2", 19, 20, 1, 1, b"all", 0, "g", "r"),
            ],
        )
        conn.execute(
            "INSERT INTO history (send_id, receiver_id, local_id, server_id, send_time, "
            "msg_type, content_type, content, platform, group_id) "
            "VALUES ('alice', 'bob', 'l1', 's1', 10, 0, 1, x'6869', 1, '')"
        )
        conn.execute("INSERT INTO idempotency VALUES ('alice', 'l1', 's1', 10, 1, 10)")
    assert apply_migrations(path) == sorted(
        p.name for p in (MIGRATIONS_DIR / "sqlite").glob("*.sql") if p.name >= "0004"
    )
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone() == (2,)
        assert conn.execute(
            "SELECT server_id, send_seq, in_history, idempotent, platform FROM messages ORDER BY id"
        ).fetchall() == [("s1", 1, 1, 1, 1), ("s2", 1, 0, 0, 0)]
        assert conn.execute("SELECT server_id, platform FROM history").fetchall() == [("s1", 1)]
    db = SqliteDatabase(path)
    await db.open()
    try:
        inbox = SqliteInbox(db)
        bob = await inbox.pull("bob", 0, 10, 0, 10, 0)
        assert [(m.server_id, m.seq, m.send_seq, m.is_read) for m in bob] == [
            ("s1", 1, 1, True),  # received: seq 1, the sender's send_seq 1
            ("s2", 0, 1, False),  # sent: seq 0, its own send_seq
        ]
        alice = await inbox.pull("alice", 0, 10, 0, 10, 0)
        assert [(m.server_id, m.seq, m.send_seq, m.content) for m in alice] == [
            ("s1", 0, 1, b"hi"),
            ("s2", 1, 0, b"all"),  # a group copy carries no send_seq
        ]
        assert alice[1].related_msg_id == "r" and alice[1].group_id == "g"
    finally:
        await db.close()


def test_a_new_database_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sandcat.db"
    apply_migrations(str(path))
    assert path.stat().st_mode & 0o777 == 0o600


def test_email_uniqueness_ignores_case_from_0007_on(tmp_path: Path) -> None:
    """Case variants already stored keep the oldest account's address; afterwards the
    index refuses a variant (``sandcat/migrations/sqlite/0007_email_case_insensitive.sql``)."""
    path, _, _ = _migrated_before(tmp_path, "0007")
    insert = (
        "INSERT INTO users (id, name, account, password, salt, avatar, email, create_time, "
        "update_time) VALUES (?, 'n', ?, '', '', 'a.png', ?, ?, ?)"
    )
    with sqlite3.connect(path) as conn:
        conn.executemany(
            insert,
            [
                ("first", "first", "bob@example.com", 1, 1),
                ("squatter", "squatter", "BOB@EXAMPLE.COM", 2, 2),
                ("other", "other", "carol@example.com", 3, 3),
            ],
        )
    assert "0007_email_case_insensitive.sql" in apply_migrations(path)
    with sqlite3.connect(path) as conn:
        emails = dict(conn.execute("SELECT id, email FROM users").fetchall())
        assert emails == {
            "first": "bob@example.com",
            "squatter": None,
            "other": "carol@example.com",
        }
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("late", "late", "Carol@Example.com", 4, 4))


def test_hidden_conversations_stay_hidden_until_their_next_message_from_0012_on(
    tmp_path: Path,
) -> None:
    """The ``hidden`` flag becomes the count at hiding, ``hidden_n``: a conversation hidden
    before the upgrade is hidden at its count now (0 without a message), one not hidden gets
    NULL (``sandcat/migrations/sqlite/0012_conversation_hidden_n.sql``)."""
    path, _, _ = _migrated_before(tmp_path, "0012")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO conversations VALUES ('a:b', 3, 's3', 'a', 1, x'6869', 30), "
            "('g', 1, 's4', 'a', 1, x'6869', 40)"
        )
        conn.execute(
            "INSERT INTO conversation_states (user_id, conversation_id, read_n, hidden, "
            "update_time) VALUES ('b', 'a:b', 1, 1, 50), ('a', 'a:b', 3, 0, 50), "
            "('b', 'g', 0, 0, 50), ('c', 'c:d', 0, 1, 50)"
        )
    assert "0012_conversation_hidden_n.sql" in apply_migrations(path)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT user_id, conversation_id, read_n, hidden_n FROM conversation_states "
            "ORDER BY user_id, conversation_id"
        ).fetchall()
        assert rows == [
            ("a", "a:b", 3, None),
            ("b", "a:b", 1, 3),
            ("b", "g", 0, None),
            ("c", "c:d", 0, 0),
        ]
        columns = {row[1] for row in conn.execute("PRAGMA table_info(conversation_states)")}
        assert "hidden" not in columns
