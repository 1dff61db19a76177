"""Bots and their webhook dead letters in SQLite (``BotStore``)."""

from __future__ import annotations

import sqlite3

from sandcat.adapters import bot_sql as sql
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.ports import BotRecord, DeadLetter


def _q(text: str) -> str:
    """The ``$N`` placeholders of ``bot_sql`` in SQLite's spelling (``?N``)."""
    return text.replace("$", "?")


class SqliteBotStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _change(self, text: str, *args: object) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(_q(text), args).rowcount > 0

        return await self._db.write(run)

    async def _one(self, text: str, *args: object) -> BotRecord | None:
        def run(conn: sqlite3.Connection) -> BotRecord | None:
            row = conn.execute(_q(text), args).fetchone()
            return sql.bot_from_row(row) if row else None

        return await self._db.read(run)

    async def insert_bot(self, bot: BotRecord) -> None:
        await self._change(sql.INSERT_BOT, *sql.bot_values(bot))

    async def get_bot(self, bot_id: str) -> BotRecord | None:
        return await self._one(sql.SELECT_BOT, bot_id)

    async def bot_by_token(self, token_hash: str) -> BotRecord | None:
        return await self._one(sql.SELECT_BY_TOKEN, token_hash)

    async def list_bots(self) -> list[BotRecord]:
        def run(conn: sqlite3.Connection) -> list[BotRecord]:
            return [sql.bot_from_row(row) for row in conn.execute(sql.LIST_BOTS)]

        return await self._db.read(run)

    async def delete_bot(self, bot_id: str) -> bool:
        return await self._change(sql.DELETE_BOT, bot_id)

    async def set_token(self, bot_id: str, token_hash: str, now_ms: int) -> bool:
        return await self._change(sql.SET_TOKEN, bot_id, token_hash, now_ms)

    async def set_webhook(
        self, bot_id: str, webhook_url: str, auto_accept: bool | None, now_ms: int
    ) -> bool:
        return await self._change(sql.SET_WEBHOOK, bot_id, webhook_url, auto_accept, now_ms)

    async def advance_cursor(self, bot_id: str, seq: int) -> None:
        await self._change(sql.ADVANCE_CURSOR, bot_id, seq)

    async def hold_leases(self, owner: str, now_ms: int, until_ms: int) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            return {row[0] for row in conn.execute(_q(sql.HOLD_LEASES), (owner, now_ms, until_ms))}

        return await self._db.write(run)

    async def release_leases(self, owner: str) -> None:
        await self._change(sql.RELEASE_LEASES, owner)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._change(sql.INSERT_LETTER, *sql.letter_values(letter))

    async def dead_letters(self, bot_id: str | None, limit: int) -> list[DeadLetter]:
        text, args = (
            (sql.LETTERS, (limit,)) if bot_id is None else (sql.BOT_LETTERS, (limit, bot_id))
        )

        def run(conn: sqlite3.Connection) -> list[DeadLetter]:
            return [sql.letter_from_row(row) for row in conn.execute(_q(text), args)]

        return await self._db.read(run)

    async def queue_replay(self, bot_id: str, letter_id: int | None, now_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if letter_id is None:
                return conn.execute(_q(sql.QUEUE_ALL_REPLAYS), (bot_id, now_ms)).rowcount
            return conn.execute(_q(sql.QUEUE_REPLAY), (bot_id, now_ms, letter_id)).rowcount

        return await self._db.write(run)

    async def replays(self, bot_id: str, limit: int) -> list[DeadLetter]:
        def run(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(_q(sql.REPLAYS), (bot_id, limit))
            return [sql.letter_from_row(row) for row in rows]

        return await self._db.read(run)

    async def remove_dead_letter(self, letter_id: int) -> None:
        await self._change(sql.REMOVE_LETTER, letter_id)

    async def replay_failed(self, letter_id: int, attempts: int, last_error: str) -> None:
        await self._change(sql.REPLAY_FAILED, letter_id, attempts, last_error)
