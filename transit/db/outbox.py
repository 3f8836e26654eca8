"""The partner notices' outbox (table ``webhook_outbox``): written in the transaction
of what caused a notice, claimed by senders with ``SKIP LOCKED``, marked delivered or
put back with a later due time. :mod:`transit.webhooks` signs and sends them."""

from __future__ import annotations

import json
from typing import Any

from psycopg.rows import tuple_row

from transit.db.query import Conn, rows, run


def enqueue(conn: Conn, event: str, mrn: str, countries: list[str], payload: dict[str, Any]) -> int:
    """Queue a notice for each of these countries that has an endpoint; how many."""
    return len(
        rows(
            conn,
            "INSERT INTO webhook_outbox (country, event, mrn, payload)"
            " SELECT country, %s, %s, %s FROM partner_endpoints WHERE country = ANY(%s)"
            " RETURNING id",
            (event, mrn, json.dumps(payload, default=str), countries),
        )
    )


def claim_due(conn: Conn, limit: int) -> list[tuple[Any, ...]]:
    """Due notices, oldest first, locked for this transaction and skipped by other
    senders: id, event, payload, attempts, the endpoint's url and secret."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            "SELECT o.id, o.event, o.payload, o.attempts, p.url, p.secret FROM webhook_outbox o"
            " JOIN partner_endpoints p ON p.country = o.country"
            " WHERE o.delivered_at IS NULL AND o.next_at <= now()"
            " ORDER BY o.id LIMIT %s FOR UPDATE OF o SKIP LOCKED",
            (limit,),
        ).fetchall()


def delivered(conn: Conn, notice_id: int) -> None:
    """Mark a notice delivered."""
    run(
        conn,
        "UPDATE webhook_outbox SET delivered_at = now(), attempts = attempts + 1,"
        " last_error = NULL WHERE id = %s",
        (notice_id,),
    )


def failed(conn: Conn, notice_id: int, error: str, retry_in_s: float) -> None:
    """Record a failed attempt; the notice is due again in ``retry_in_s``."""
    run(
        conn,
        "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = %s,"
        " next_at = now() + make_interval(secs => %s) WHERE id = %s",
        (error, retry_in_s, notice_id),
    )


def pending(conn: Conn) -> list[dict[str, Any]]:
    """Notices not delivered yet, oldest first."""
    return rows(
        conn,
        "SELECT id, country, event, mrn, attempts, next_at, last_error FROM webhook_outbox"
        " WHERE delivered_at IS NULL ORDER BY id",
    )
