"""SQL shared by the SQLite and PostgreSQL conversation stores (same schema, same rows)."""

from __future__ import annotations

from typing import Any

from sandcat.adapters.social_sql import ACCEPTED
from sandcat.ports import Conversation, LastMessage

#: Where to look for a user's conversations changed after a time: pinned first, newest first.
SINCE = "WHERE x.update_time > {p}2 ORDER BY x.pinned DESC, x.last_time DESC, x.peer"
#: Where to look for one conversation of a user.
PEER = "WHERE x.peer = {p}2"


def view_sql(where: str, *, placeholder: str, greatest: str, byte_order: str) -> str:
    """The conversations of user ``{p}1``: one per accepted friend and per group, with the
    conversation's row and the user's state when there are any. ``where`` is ``SINCE`` or
    ``PEER``; ``greatest`` is the dialect's ``MAX``/``GREATEST``; ``byte_order`` makes
    ``<`` compare ids byte by byte, as ``sandcat.domain.conversation_id`` does. A
    conversation is hidden while its count is the one it had when hidden (``hidden_n``).
    A user's ``read_n`` is the larger of their state's and, one-to-one, their side's mark
    in the conversation's row (``lo_read_n`` when their id sorts first)."""
    p = placeholder
    return (
        "SELECT * FROM (SELECT v.peer, v.is_group, COALESCE(c.n, 0) AS n, "
        f"{greatest}(COALESCE(s.read_n, 0), COALESCE(CASE WHEN v.is_group THEN 0 "
        f"WHEN {p}1 < v.peer{byte_order} THEN c.lo_read_n ELSE c.hi_read_n END, 0)) AS read_n, "
        "c.last_server_id, c.last_sender, "
        "c.last_content_type, c.last_content, COALESCE(c.last_time, 0) AS last_time, "
        "COALESCE(s.pinned, FALSE) AS pinned, COALESCE(s.muted, FALSE) AS muted, "
        "COALESCE(s.hidden_n = COALESCE(c.n, 0), FALSE) AS hidden, "
        f"{greatest}(v.since, COALESCE(c.last_time, 0), COALESCE(s.update_time, 0)) "
        "AS update_time FROM ("
        "SELECT f.friend_id AS peer, FALSE AS is_group, "
        f"CASE WHEN f.user_id < f.friend_id{byte_order} THEN f.user_id || ':' || f.friend_id "
        "ELSE f.friend_id || ':' || f.user_id END AS cid, f.update_time AS since "
        f"FROM friends f WHERE f.user_id = {p}1 AND f.status = {int(ACCEPTED)} "
        "UNION ALL SELECT m.group_id, TRUE, m.group_id, m.joined_at FROM group_members m "
        f"WHERE m.user_id = {p}1) AS v "
        "LEFT JOIN conversations c ON c.id = v.cid "
        f"LEFT JOIN conversation_states s ON s.user_id = {p}1 AND s.conversation_id = v.cid"
        ") AS x " + where.format(p=p)
    )


def join_read_sql(members: str, *, group: str, now: str, greatest: str) -> str:
    """Joining a group reads its conversation up to its count now, so that the messages
    sent before the join are not unread: one upsert for the ``user_id`` column of
    ``members``, none when the group has no message yet. ``group`` and ``now`` are
    placeholders; a rejoining member's ``read_n`` never goes back."""
    return (
        "INSERT INTO conversation_states AS s (user_id, conversation_id, read_n, update_time) "
        f"SELECT j.user_id, c.id, c.n, {now} FROM {members} AS j "
        f"JOIN conversations AS c ON c.id = {group} WHERE TRUE ORDER BY j.user_id "
        "ON CONFLICT (user_id, conversation_id) DO UPDATE SET "
        f"read_n = {greatest}(s.read_n, excluded.read_n), update_time = excluded.update_time"
    )


def conversation_of(row: Any) -> Conversation:
    """A row of ``view_sql``."""
    (peer, is_group, n, read_n, server_id, sender, content_type, content, last_time) = row[:9]
    last = (
        None
        if server_id is None
        else LastMessage(server_id, sender, content_type, bytes(content), last_time)
    )
    pinned, muted, hidden, update_time = row[9:]
    return Conversation(
        peer_id=peer,
        is_group=bool(is_group),
        n=n,
        read_n=read_n,
        last=last,
        pinned=bool(pinned),
        muted=bool(muted),
        hidden=bool(hidden),
        update_time=update_time,
    )
