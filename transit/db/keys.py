"""API keys (table ``api_keys``): stored as a SHA-256 hash with a role and scope,
revoked or expired at the database's clock. :mod:`transit.keys` makes, checks and
shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from transit.db.query import Conn, row, rows, run, value

# The columns anyone may see, and the key's state at the database's clock.
_INFO = """
SELECT prefix AS id, role, office, country, label, created_at, created_by, expires_at,
       revoked_at, revoked_by, last_used_at,
       CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
            WHEN expires_at <= now() THEN 'expired' ELSE 'active' END AS status
FROM api_keys
"""


def insert(
    conn: Conn,
    prefix: str,
    key_hash: bytes,
    role: str,
    office: str | None,
    country: str | None,
    label: str,
    actor: str,
    expires_at: datetime | None,
) -> None:
    """Store a new key."""
    run(
        conn,
        "INSERT INTO api_keys (prefix, key_hash, role, office, country, label, created_by,"
        " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (prefix, key_hash, role, office, country, label, actor, expires_at),
    )


def in_future(conn: Conn, at: datetime) -> bool:
    """Whether ``at`` lies ahead of the database's clock."""
    return bool(value(conn, "SELECT %s::timestamptz > now()", (at,)))


def infos(conn: Conn, include_inactive: bool) -> list[dict[str, Any]]:
    """What may be shown of each key, oldest first: the active ones, or every one."""
    where = (
        ""
        if include_inactive
        else " WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    )
    return rows(conn, _INFO + where + " ORDER BY created_at, id")


def info(conn: Conn, prefix: str) -> dict[str, Any] | None:
    """What may be shown of one key, by its public id."""
    return row(conn, _INFO + " WHERE prefix = %s", (prefix,))


def revoke(conn: Conn, prefix: str, actor: str) -> bool:
    """Revoke the key if it is not revoked already; whether it was."""
    return (
        row(
            conn,
            "UPDATE api_keys SET revoked_at = now(), revoked_by = %s"
            " WHERE prefix = %s AND revoked_at IS NULL RETURNING id",
            (actor, prefix),
        )
        is not None
    )


def for_authentication(conn: Conn, prefix: str) -> tuple[Any, ...] | None:
    """The key's row id, prefix, hash, role, office, country, label, revoked_at,
    expires_at, whether it has expired, and whether its last use is over a minute old."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            "SELECT id, prefix, key_hash, role, office, country, label, revoked_at, expires_at,"
            " expires_at <= now(),"
            " last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"
            " FROM api_keys WHERE prefix = %s",
            (prefix,),
        ).fetchone()


def touch(conn: Conn, key_row_id: int) -> None:
    """Record the key's use now."""
    run(conn, "UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_row_id,))


def states(conn: Conn, key_row_ids: list[int]) -> list[tuple[Any, ...]]:
    """Of these keys (by row id) those that exist: id, prefix, revoked_at, expires_at,
    and whether they no longer work."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            "SELECT id, prefix, revoked_at, expires_at, revoked_at IS NOT NULL OR"
            " expires_at <= now() FROM api_keys WHERE id = ANY(%s)",
            (key_row_ids,),
        ).fetchall()
