"""The store of fixes the ingest filters kept apart (``filtered_fixes``), and the
reference the stale filter needs (each device's newest stored fix)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import dict_row, tuple_row

from transit.db.store import Conn
from transit.rules.filters import FilteredFix

_COLUMNS = "time, device_id, seq, idx, lat, lon, speed_kmh, course_deg, hdop, reason, detail"
_TYPES = (
    "timestamptz[]",
    "text[]",
    "int8[]",
    "int4[]",
    "float8[]",
    "float8[]",
    "float4[]",
    "float4[]",
    "float4[]",
    "text[]",
    "text[]",
)


def write_filtered(conn: Conn, filtered: list[FilteredFix]) -> int:
    """Keep the fixes the filters set apart, with their reasons, in the caller's
    transaction. One already kept, or already stored as believed (a redelivered
    message judged otherwise the second time), is not written again. Returns the
    rows written."""
    if not filtered:
        return 0
    rows = [
        (
            f.fix.time,
            f.fix.device_id,
            f.fix.seq,
            f.fix.idx,
            f.fix.lat,
            f.fix.lon,
            f.fix.speed_kmh,
            f.fix.course_deg,
            f.fix.hdop,
            f.reason,
            f.detail,
        )
        for f in filtered
    ]
    arrays = ", ".join(f"%s::{t}" for t in _TYPES)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO filtered_fixes ({_COLUMNS})"
            # One row per fix, even for a message that came twice in the batch.
            f" SELECT DISTINCT ON (device_id, seq, idx) * FROM unnest({arrays})"
            f" AS n ({_COLUMNS})"
            " WHERE NOT EXISTS (SELECT 1 FROM filtered_fixes k WHERE k.device_id = n.device_id"
            " AND k.seq = n.seq AND k.idx = n.idx)"
            " AND NOT EXISTS (SELECT 1 FROM fixes k WHERE k.device_id = n.device_id"
            " AND k.seq = n.seq AND k.idx = n.idx AND k.time = n.time)",
            [list(col) for col in zip(*rows, strict=True)],
        )
        return cur.rowcount


def newest_fix_times(conn: Conn) -> dict[str, datetime]:
    """Each device's newest stored fix (devices that stored none are left out)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT device_id, last_fix_time FROM devices WHERE last_fix_time IS NOT NULL"
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def list_filtered(
    conn: Conn,
    device_id: str,
    since: datetime | None,
    until: datetime | None,
    reason: str | None,
    limit: int,
) -> dict[str, Any]:
    """A device's filtered fixes received in ``[since, until]`` (by the server's clock:
    a filtered fix's own time may be anything), newest first, at most ``limit``, with
    the count of each reason over the whole window."""
    window = (
        " WHERE device_id = %s AND (%s::timestamptz IS NULL OR received_at >= %s)"
        " AND (%s::timestamptz IS NULL OR received_at <= %s)"
    )
    args = (device_id, since, since, until, until)
    with conn.cursor(row_factory=tuple_row) as cur:
        counts = cur.execute(
            "SELECT reason, count(*) FROM filtered_fixes" + window + " GROUP BY reason",
            args,
        ).fetchall()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT received_at, time, seq, idx, lat, lon, speed_kmh, course_deg, hdop,"
            " reason, detail FROM filtered_fixes"
            + window
            + " AND (%s::text IS NULL OR reason = %s) ORDER BY received_at DESC, seq DESC,"
            " idx DESC LIMIT %s",
            (*args, reason, reason, limit),
        ).fetchall()
    return {"counts": {r[0]: int(r[1]) for r in counts}, "fixes": rows}


def kept_apart(conn: Conn, keys: list[tuple[str, int]]) -> set[tuple[str, int, int]]:
    """(device, seq, idx) of the fixes of these messages (device, seq) kept apart."""
    if not keys:
        return set()
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT f.device_id, f.seq, f.idx FROM filtered_fixes f"
            " JOIN unnest(%s::text[], %s::int8[]) AS x(dev, seq)"
            " ON f.device_id = x.dev AND f.seq = x.seq",
            ([d for d, _ in keys], [s for _, s in keys]),
        ).fetchall()
    return {(r[0], int(r[1]), int(r[2])) for r in rows}
