"""Partner countries' notice endpoints (table ``partner_endpoints``): where a
country's notices go and the secret they are signed with."""

from __future__ import annotations

from typing import Any

from transit.db.query import Conn, rows, run


def list_all(conn: Conn) -> list[dict[str, Any]]:
    """Every endpoint with its count of notices not delivered yet, by country."""
    return rows(
        conn,
        "SELECT p.country, p.url, p.created_at, count(o.id) FILTER"
        " (WHERE o.delivered_at IS NULL) AS pending FROM partner_endpoints p"
        " LEFT JOIN webhook_outbox o ON o.country = p.country GROUP BY p.country ORDER BY 1",
    )


def put(conn: Conn, country: str, url: str, secret: bytes) -> None:
    """Register or replace a country's endpoint and secret."""
    run(
        conn,
        "INSERT INTO partner_endpoints (country, url, secret) VALUES (%s, %s, %s)"
        " ON CONFLICT (country) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret",
        (country, url, secret),
    )
