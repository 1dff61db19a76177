"""Bots and their webhook dead letters in PostgreSQL (``BotStore``)."""

from __future__ import annotations

import asyncpg

from sandcat.adapters import bot_sql as sql
from sandcat.adapters.postgres.errors import pg_errors
from sandcat.ports import BotRecord, DeadLetter


class PostgresBotStore:
    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _change(self, text: str, *args: object) -> bool:
        status: str = await self._pool.execute(text, *args)
        return not status.endswith(" 0")

    async def _one(self, text: str, *args: object) -> BotRecord | None:
        row = await self._pool.fetchrow(text, *args)
        return sql.bot_from_row(tuple(row)) if row else None

    @pg_errors
    async def insert_bot(self, bot: BotRecord) -> None:
        await self._change(sql.INSERT_BOT, *sql.bot_values(bot))

    @pg_errors
    async def get_bot(self, bot_id: str) -> BotRecord | None:
        return await self._one(sql.SELECT_BOT, bot_id)

    @pg_errors
    async def bot_by_token(self, token_hash: str) -> BotRecord | None:
        return await self._one(sql.SELECT_BY_TOKEN, token_hash)

    @pg_errors
    async def list_bots(self) -> list[BotRecord]:
        return [sql.bot_from_row(tuple(row)) for row in await self._pool.fetch(sql.LIST_BOTS)]

    @pg_errors
    async def delete_bot(self, bot_id: str) -> bool:
        return await self._change(sql.DELETE_BOT, bot_id)

    @pg_errors
    async def set_token(self, bot_id: str, token_hash: str, now_ms: int) -> bool:
        return await self._change(sql.SET_TOKEN, bot_id, token_hash, now_ms)

    @pg_errors
    async def set_webhook(
        self, bot_id: str, webhook_url: str, auto_accept: bool | None, now_ms: int
    ) -> bool:
        return await self._change(sql.SET_WEBHOOK, bot_id, webhook_url, auto_accept, now_ms)

    @pg_errors
    async def advance_cursor(self, bot_id: str, seq: int) -> None:
        await self._change(sql.ADVANCE_CURSOR, bot_id, seq)

    @pg_errors
    async def hold_leases(self, owner: str, now_ms: int, until_ms: int) -> set[str]:
        rows = await self._pool.fetch(sql.HOLD_LEASES, owner, now_ms, until_ms)
        return {row[0] for row in rows}

    @pg_errors
    async def release_leases(self, owner: str) -> None:
        await self._change(sql.RELEASE_LEASES, owner)

    @pg_errors
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._change(sql.INSERT_LETTER, *sql.letter_values(letter))

    @pg_errors
    async def dead_letters(self, bot_id: str | None, limit: int) -> list[DeadLetter]:
        rows = (
            await self._pool.fetch(sql.LETTERS, limit)
            if bot_id is None
            else await self._pool.fetch(sql.BOT_LETTERS, limit, bot_id)
        )
        return [sql.letter_from_row(tuple(row)) for row in rows]

    @pg_errors
    async def queue_replay(self, bot_id: str, letter_id: int | None, now_ms: int) -> int:
        status: str = (
            await self._pool.execute(sql.QUEUE_ALL_REPLAYS, bot_id, now_ms)
            if letter_id is None
            else await self._pool.execute(sql.QUEUE_REPLAY, bot_id, now_ms, letter_id)
        )
        return int(status.rsplit(" ", 1)[1])

    @pg_errors
    async def replays(self, bot_id: str, limit: int) -> list[DeadLetter]:
        rows = await self._pool.fetch(sql.REPLAYS, bot_id, limit)
        return [sql.letter_from_row(tuple(row)) for row in rows]

    @pg_errors
    async def remove_dead_letter(self, letter_id: int) -> None:
        await self._change(sql.REMOVE_LETTER, letter_id)

    @pg_errors
    async def replay_failed(self, letter_id: int, attempts: int, last_error: str) -> None:
        await self._change(sql.REPLAY_FAILED, letter_id, attempts, last_error)
