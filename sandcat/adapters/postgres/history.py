"""Chat history in the monthly-partitioned ``messages`` table, and the conversations it
keeps up to date in the same statement."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sandcat.adapters.postgres.errors import pg_errors
from sandcat.protocol.msg import Msg

#: One statement per batch: each column travels as one array. The messages it inserts
#: (a replayed batch inserts none, so nothing is counted twice) then raise their
#: conversations' count and last message (one row per conversation), and mark each
#: sender's conversation read up to their newest message of the batch: a one-to-one
#: sender's mark in the conversation's row (``lo_read_n``/``hi_read_n``, the count at
#: the side's newest message), a group sender's in their state. Rows are locked in key
#: order, so concurrent msg-servers cannot deadlock on them.
_APPEND = """
WITH ins AS (
    INSERT INTO messages (send_id, receiver_id, local_id, server_id, send_time, msg_type,
        content_type, content, platform, group_id)
    SELECT * FROM unnest($1::VARCHAR[], $2::VARCHAR[], $3::VARCHAR[], $4::VARCHAR[],
        $5::BIGINT[], $6::INT[], $7::INT[], $8::BYTEA[], $9::INT[], $10::VARCHAR[])
    ON CONFLICT DO NOTHING
    RETURNING send_id, receiver_id, server_id, send_time, content_type, content, group_id
), keyed AS (
    SELECT CASE WHEN group_id <> '' THEN group_id
        WHEN send_id < receiver_id COLLATE "C" THEN send_id || ':' || receiver_id
        ELSE receiver_id || ':' || send_id END AS id, ins.*
    FROM ins
), ranked AS (
    SELECT keyed.*, count(*) OVER (PARTITION BY id) AS total,
        row_number() OVER (PARTITION BY id ORDER BY send_time DESC, server_id DESC) AS from_end
    FROM keyed
), sides AS (
    SELECT id,
        max(total - from_end + 1) FILTER (WHERE send_id < receiver_id COLLATE "C") AS lo_at,
        max(total - from_end + 1) FILTER (WHERE send_id >= receiver_id COLLATE "C") AS hi_at
    FROM ranked WHERE group_id = '' GROUP BY id
), conv AS (
    INSERT INTO conversations AS c (id, n, last_server_id, last_sender, last_content_type,
        last_content, last_time, lo_read_n, hi_read_n)
    SELECT r.id, r.total, r.server_id, r.send_id, r.content_type, r.content, r.send_time,
        COALESCE(s.lo_at, 0), COALESCE(s.hi_at, 0)
    FROM ranked AS r LEFT JOIN sides AS s ON s.id = r.id
    WHERE r.from_end = 1 ORDER BY r.id
    ON CONFLICT (id) DO UPDATE SET n = c.n + excluded.n,
        last_server_id = CASE WHEN excluded.last_time >= c.last_time
            THEN excluded.last_server_id ELSE c.last_server_id END,
        last_sender = CASE WHEN excluded.last_time >= c.last_time
            THEN excluded.last_sender ELSE c.last_sender END,
        last_content_type = CASE WHEN excluded.last_time >= c.last_time
            THEN excluded.last_content_type ELSE c.last_content_type END,
        last_content = CASE WHEN excluded.last_time >= c.last_time
            THEN excluded.last_content ELSE c.last_content END,
        last_time = GREATEST(c.last_time, excluded.last_time),
        lo_read_n = CASE excluded.lo_read_n WHEN 0 THEN c.lo_read_n
            ELSE GREATEST(c.lo_read_n, c.n + excluded.lo_read_n) END,
        hi_read_n = CASE excluded.hi_read_n WHEN 0 THEN c.hi_read_n
            ELSE GREATEST(c.hi_read_n, c.n + excluded.hi_read_n) END
    RETURNING id, n
)
INSERT INTO conversation_states AS s (user_id, conversation_id, read_n, update_time)
SELECT DISTINCT ON (r.send_id, r.id) r.send_id, r.id, conv.n - r.from_end + 1, r.send_time
FROM ranked AS r JOIN conv ON conv.id = r.id
WHERE r.group_id <> ''
ORDER BY r.send_id, r.id, r.from_end
ON CONFLICT (user_id, conversation_id) DO UPDATE SET
    read_n = GREATEST(s.read_n, excluded.read_n),
    update_time = GREATEST(s.update_time, excluded.update_time)
"""


class PostgresHistory:
    """Implements ``HistoryStore``: batched, idempotent on (send_id, server_id, send_time),
    conversations included."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def append(self, messages: Sequence[Msg]) -> None:
        if not messages:
            return
        await self._pool.execute(
            _APPEND,
            [m.send_id for m in messages],
            [m.receiver_id for m in messages],
            [m.local_id for m in messages],
            [m.server_id for m in messages],
            [m.send_time for m in messages],
            [m.msg_type for m in messages],
            [m.content_type for m in messages],
            [m.content for m in messages],
            [m.platform for m in messages],
            [m.group_id for m in messages],
        )
