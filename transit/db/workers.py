"""Ingest workers' counters (table ``ingest_workers``): each worker saves its own
about once a second; ``/metrics`` and ``/health/ingest`` read them all."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from transit.db.query import Conn, rows, run


def save(conn: Conn, worker_id: str, pid: int, started: datetime, stats: dict[str, Any]) -> None:
    """Upsert one worker's counters."""
    run(
        conn,
        "INSERT INTO ingest_workers (worker_id, pid, started_at, updated_at, stats)"
        " VALUES (%s, %s, %s, now(), %s) ON CONFLICT (worker_id) DO UPDATE SET"
        " pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, updated_at = now(),"
        " stats = EXCLUDED.stats",
        (worker_id, pid, started, json.dumps(stats)),
    )


def all_stats(conn: Conn) -> list[tuple[str, float, dict[str, Any]]]:
    """Every worker's id, seconds since its last update, and counters."""
    found = rows(
        conn,
        "SELECT worker_id, extract(epoch FROM now() - updated_at)::float8 AS age, stats"
        " FROM ingest_workers ORDER BY worker_id",
    )
    return [(r["worker_id"], float(r["age"]), r["stats"]) for r in found]
