"""SQL shared by the SQLite and PostgreSQL device stores (same schema, same rows)."""

from __future__ import annotations

from sandcat.ports import Device

COLUMNS = "id, user_id, platform, client, user_agent, address, first_seen, last_seen"


def device_values(device: Device) -> tuple[object, ...]:
    """The values of ``COLUMNS`` for ``device``, in order."""
    return (
        device.id,
        device.user_id,
        device.platform,
        device.client,
        device.user_agent,
        device.address,
        device.first_seen,
        device.last_seen,
    )


def insert_sql(p: str) -> str:
    """A new device: the values of ``COLUMNS``, then its refresh jti, with the placeholder
    ``p`` (``?`` or ``$``) numbered 1 to 9."""
    return f"INSERT INTO devices ({COLUMNS}, refresh_jti) VALUES " + (
        "(" + ", ".join(f"{p}{n}" for n in range(1, 10)) + ")"
    )


def evict_sql(p: str) -> str:
    """Removes the devices of user ``p1`` but the ``p2`` last seen, device ``p3`` (the one
    just added) kept first whatever its times; returns the removed ids."""
    return (
        f"DELETE FROM devices WHERE user_id = {p}1 AND id NOT IN (SELECT id FROM devices "
        f"WHERE user_id = {p}1 ORDER BY id = {p}3 DESC, last_seen DESC, first_seen DESC, id "
        f"LIMIT {p}2) RETURNING id"
    )


def devices_sql(p: str) -> str:
    """The devices of user ``p1``, the last seen first."""
    return (
        f"SELECT {COLUMNS} FROM devices WHERE user_id = {p}1 "
        "ORDER BY last_seen DESC, first_seen DESC"
    )


def remove_others_sql(p: str) -> str:
    """Removes the devices of user ``p1`` but device ``p2``; returns the removed ids."""
    return f"DELETE FROM devices WHERE user_id = {p}1 AND id <> {p}2 RETURNING id"


def use_refresh_sql(p: str) -> str:
    """``DeviceStore.use_refresh`` in one statement, with the placeholder ``p`` (``?`` or
    ``$``) numbered: 1 user, 2 device, 3 the presented jti, 4 the next one, 5 address,
    6 now (ms), 7 the grace (ms), 8 the oldest rotation still within it. Every ``SET``
    reads the row as it was, so one statement both rotates (the current jti becomes the
    previous one) and answers a replay of the previous one (nothing rotates); it returns
    the current jti afterwards, and no row when the use is refused."""
    rotates = f"refresh_jti = {p}3 AND {p}4 <> {p}3"
    return (
        f"UPDATE devices SET "
        f"previous_jti = CASE WHEN {rotates} THEN refresh_jti ELSE previous_jti END, "
        f"rotated_at = CASE WHEN {rotates} THEN {p}6 ELSE rotated_at END, "
        f"refresh_jti = CASE WHEN refresh_jti = {p}3 THEN {p}4 ELSE refresh_jti END, "
        f"address = {p}5, last_seen = {p}6 "
        f"WHERE id = {p}2 AND user_id = {p}1 AND (refresh_jti = {p}3 OR ({p}7 > 0 "
        f"AND previous_jti = {p}3 AND previous_jti <> '' AND rotated_at >= {p}8)) "
        "RETURNING refresh_jti"
    )
