"""The store of accepted messages as their devices signed them (``raw_messages``):
written with each ingest batch, read to verify a message again."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from transit.devices import payload as wire

Conn = psycopg.Connection[Any]

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS raw_stage
  (time timestamptz, device_id text, seq bigint, topic text, payload bytea, sig text,
   envelope boolean) ON COMMIT DELETE ROWS;
"""
_TYPES = ["timestamptz", "text", "int8", "text", "bytea", "text", "bool"]
_COLUMNS = "time, device_id, seq, topic, payload, sig, envelope"


def create_staging(conn: Conn) -> None:
    """Create the session's staging table if it has none (with ingest's others)."""
    conn.execute(_STAGE)


def write_messages(conn: Conn, messages: Sequence[wire.SignedMessage]) -> int:
    """Keep the batch's messages, in the caller's transaction; one stored already (a
    redelivery) is not written again. Returns the rows written.

    Binary COPY straight into ``raw_messages`` (the batch's own repeats left out
    first); only when a message of the batch is stored already (a redelivery, rare)
    does the unique index refuse the COPY, and the batch goes through the staging
    table with ``ON CONFLICT DO NOTHING`` instead. A time ahead of the clock is
    stored as now: a device whose clock runs years ahead makes no chunk in the future.
    """
    if not messages:
        return 0
    now = datetime.now(UTC)
    rows: dict[tuple[str, int, datetime], tuple[Any, ...]] = {}
    for m in messages:
        t = min(m.time, now)
        rows.setdefault(
            (m.device_id, m.seq, t), (t, m.device_id, m.seq, m.topic, m.body, m.sig, m.envelope)
        )
    try:
        with conn.transaction(), conn.cursor() as cur:
            _copy(cur, "raw_messages", rows.values())
        return len(rows)
    except psycopg.errors.UniqueViolation:
        pass
    with conn.cursor() as cur:
        _copy(cur, "raw_stage", rows.values())
        cur.execute(
            f"INSERT INTO raw_messages ({_COLUMNS}) SELECT {_COLUMNS} FROM raw_stage"
            " ON CONFLICT DO NOTHING"
        )
        return cur.rowcount


def _copy(cur: psycopg.Cursor[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(_TYPES)
        for r in rows:
            cp.write_row(r)


def get_message(conn: Conn, device_id: str, seq: int) -> dict[str, Any] | None:
    """Message ``seq`` of a device as kept, with the device's current key (None when it
    holds none) and when that key was last rotated; None when no such message is kept."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT m.device_id, m.seq, m.time, m.received_at, m.topic, m.payload, m.sig,"
            " m.envelope, d.hmac_key AS key, d.key_rotated_at FROM raw_messages m"
            " LEFT JOIN devices d ON d.device_id = m.device_id"
            " WHERE m.device_id = %s AND m.seq = %s ORDER BY m.received_at LIMIT 1",
            (device_id, seq),
        ).fetchone()
