"""The audit log (table ``audit_log``): appended under a transaction-scoped advisory
lock, read whole to verify its hash chain (:mod:`transit.audit`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from transit.db.query import Conn, row, rows, run

LOCK_KEY = 0x7A0D17  # pg_advisory_xact_lock key of the audit chain


def lock_head(conn: Conn) -> bytes | None:
    """Take the chain's lock (until the transaction ends) and return the newest row's
    hash (None: the log is empty)."""
    run(conn, "SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    newest = row(conn, "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
    return bytes(newest["hash"]) if newest else None


def insert(
    conn: Conn,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details_json: str,
    prev_hash: bytes | None,
    digest: bytes,
) -> int:
    """Append a row; its id."""
    new = row(
        conn,
        "INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (at, actor, action, subject, details_json, prev_hash, digest),
    )
    assert new is not None
    return int(new["id"])


def chain(conn: Conn) -> Iterator[tuple[Any, ...]]:
    """Every row from the first: id, at, actor, action, subject, details, prev_hash,
    hash."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT id, at, actor, action, subject, details, prev_hash, hash"
            " FROM audit_log ORDER BY id"
        )
        yield from cur


def newest(conn: Conn, limit: int) -> list[dict[str, Any]]:
    """The newest entries, newest first."""
    return rows(
        conn,
        "SELECT id, at, actor, action, subject, details FROM audit_log ORDER BY id DESC LIMIT %s",
        (limit,),
    )
