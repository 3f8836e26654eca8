"""Devices (table ``devices``): trackers, seals and edge readers that report over MQTT,
with their HMAC keys and when each was last heard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from transit.db.query import Conn, row, rows, run


def list_all(conn: Conn) -> list[dict[str, Any]]:
    """Every device: kind, whether it signs, when registered, last heard, battery."""
    return rows(
        conn,
        "SELECT device_id, kind, hmac_key IS NOT NULL AS signed, registered_at, last_seen,"
        " battery_pct, key_rotated_at FROM devices ORDER BY device_id",
    )


def kind(conn: Conn, device_id: str) -> str | None:
    """The device's kind (``tracker``, ``seal``, ``edge``), or None when unregistered."""
    found = row(conn, "SELECT kind FROM devices WHERE device_id = %s", (device_id,))
    return found["kind"] if found else None


def exists(conn: Conn, device_id: str) -> bool:
    """Whether the device is registered."""
    return kind(conn, device_id) is not None


def ids(conn: Conn) -> list[str]:
    """Every registered device id."""
    return [r["device_id"] for r in rows(conn, "SELECT device_id FROM devices ORDER BY 1")]


def register(
    conn: Conn, device_id: str, kind: str = "tracker", hmac_key: bytes | None = None
) -> None:
    """Register a device (idempotent); with a key, set or rotate its HMAC key."""
    run(
        conn,
        "INSERT INTO devices (device_id, kind, hmac_key) VALUES (%s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET hmac_key = coalesce(EXCLUDED.hmac_key,"
        " devices.hmac_key)",
        (device_id, kind, hmac_key),
    )


def rotate_key(conn: Conn, device_id: str, hmac_key: bytes) -> bool:
    """Give the device a new HMAC key; False when there is no such device."""
    return bool(
        run(
            conn,
            "UPDATE devices SET hmac_key = %s, key_rotated_at = now() WHERE device_id = %s",
            (hmac_key, device_id),
        )
    )


def heard_within(conn: Conn, device_id: str, seconds: float) -> bool:
    """Whether the device was heard in the last ``seconds`` (by the database's clock)."""
    found = row(
        conn,
        "SELECT last_seen >= now() - make_interval(secs => %s) AS fresh FROM devices"
        " WHERE device_id = %s",
        (seconds, device_id),
    )
    return bool(found and found["fresh"])


def set_last_seen(conn: Conn, device_id: str, at: datetime | None) -> None:
    """Set when the device was last heard (the silence watchdog's clock)."""
    run(conn, "UPDATE devices SET last_seen = %s WHERE device_id = %s", (at, device_id))


def heard(conn: Conn, device_ids: list[str]) -> None:
    """The devices were heard now (the watchdog's clock, shared by every worker)."""
    run(conn, "UPDATE devices SET last_seen = now() WHERE device_id = ANY(%s)", (device_ids,))


def last_seen(conn: Conn, device_ids: list[str]) -> dict[str, datetime]:
    """When each of these devices was last heard (those ever heard), by the database's
    clock."""
    found = rows(
        conn,
        "SELECT device_id, last_seen FROM devices"
        " WHERE device_id = ANY(%s) AND last_seen IS NOT NULL",
        (device_ids,),
    )
    return {r["device_id"]: r["last_seen"] for r in found}


def hmac_keys(conn: Conn, only: list[str] | None = None) -> dict[str, bytes | None]:
    """Registered devices (all, or ``only`` those) with their HMAC key (None: unsigned)."""
    found = rows(
        conn,
        "SELECT device_id, hmac_key FROM devices WHERE %s::text[] IS NULL OR device_id = ANY(%s)",
        (only, only),
    )
    return {
        r["device_id"]: (bytes(r["hmac_key"]) if r["hmac_key"] is not None else None) for r in found
    }
