"""Telemetry (hypertables ``fixes`` and ``seal_events``): written by ingest through
binary COPY into session staging tables, then into the hypertables with ``ON CONFLICT
DO NOTHING`` (a redelivered message writes nothing twice); read as a tracker's newest
fix, its seals' last reports, its track (downsampled in the database when long).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import psycopg

from transit.db.query import Conn, row, rows, run, value
from transit.model import Fix, SealEvent

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS fixes_stage
  (time timestamptz, device_id text, seq bigint, idx integer, lat float8, lon float8,
   speed_kmh real, course_deg real, hdop real) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS seal_events_stage
  (time timestamptz, device_id text, seq bigint, seal_id text, status text, counter bigint,
   battery_pct real, lat float8, lon float8) ON COMMIT DELETE ROWS;
"""
_FIX_COLUMNS = ("time", "device_id", "seq", "idx", "lat", "lon", "speed_kmh", "course_deg", "hdop")
_SEAL_COLUMNS = (
    "time",
    "device_id",
    "seq",
    "seal_id",
    "status",
    "counter",
    "battery_pct",
    "lat",
    "lon",
)
_FIX_TYPES = [
    "timestamptz",
    "text",
    "int8",
    "int4",
    "float8",
    "float8",
    "float4",
    "float4",
    "float4",
]
_SEAL_TYPES = ["timestamptz", "text", "int8", "text", "text", "int8", "float4", "float8", "float8"]

# The fixes of a device in [lo, hi] (hi None: up to now).
_RANGE = (
    "device_id = %(device)s AND time >= %(lo)s AND (%(hi)s::timestamptz IS NULL OR time <= %(hi)s)"
)


def create_staging(conn: Conn) -> None:
    """Create the staging tables if this session has none, in the caller's transaction."""
    run(conn, _STAGE)


def _stage_and_insert(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: tuple[str, ...],
    types: list[str],
    values: Iterable[tuple[Any, ...]],
) -> int:
    """Rows through binary COPY into ``table``'s session staging table, then into
    ``table`` where new; how many were new."""
    names = ", ".join(columns)
    with cur.copy(f"COPY {table}_stage ({names}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(types)
        for v in values:
            cp.write_row(v)
    cur.execute(f"INSERT INTO {table} ({names}) SELECT * FROM {table}_stage ON CONFLICT DO NOTHING")
    return cur.rowcount


def write_fixes(conn: Conn, fixes: list[Fix]) -> int:
    """Store fixes not stored yet (staging tables created); how many were new. Each
    device's newest stored fix (the stale filter's reference) moves on with them."""
    with conn.cursor() as cur:
        inserted = _stage_and_insert(
            cur,
            "fixes",
            _FIX_COLUMNS,
            _FIX_TYPES,
            map(attrgetter(*_FIX_COLUMNS), fixes),
        )
        cur.execute(
            "UPDATE devices d SET last_fix_time = s.t FROM (SELECT device_id,"
            " max(time) AS t FROM fixes_stage GROUP BY device_id) s"
            " WHERE d.device_id = s.device_id"
            " AND (d.last_fix_time IS NULL OR d.last_fix_time < s.t)"
        )
    return inserted


def _seal_row(e: SealEvent) -> tuple[Any, ...]:
    status = e.status.value
    return (e.time, e.device_id, e.seq, e.seal_id, status, e.counter, e.battery_pct, e.lat, e.lon)


def write_seal_events(conn: Conn, events: list[SealEvent]) -> None:
    """Store seal events not stored yet (staging tables created)."""
    with conn.cursor() as cur:
        _stage_and_insert(
            cur,
            "seal_events",
            _SEAL_COLUMNS,
            _SEAL_TYPES,
            map(_seal_row, events),
        )


@dataclass(frozen=True)
class Track:
    """A track's points (``time``, ``lon``, ``lat``), how many fixes it stands for and
    the bucket they were averaged in (0: every fix)."""

    points: list[dict[str, Any]]
    fixes: int
    bucket_s: float


def last_position(conn: Conn, device_id: str, since: datetime) -> tuple[float, float] | None:
    """The (lon, lat) of the device's newest fix since ``since``."""
    found = row(
        conn,
        "SELECT lon, lat FROM fixes WHERE device_id = %s AND time >= %s ORDER BY time DESC LIMIT 1",
        (device_id, since),
    )
    return (found["lon"], found["lat"]) if found else None


def seal_statuses(
    conn: Conn, device_id: str, seal_ids: list[str], since: datetime
) -> dict[str, str | None]:
    """Each seal's last status reported through this tracker from a day before
    ``since`` on (None: it has not reported)."""
    found = rows(
        conn,
        "SELECT DISTINCT ON (seal_id) seal_id, status FROM seal_events"
        " WHERE seal_id = ANY(%s) AND device_id = %s AND time >= %s - interval '1 day'"
        " ORDER BY seal_id, time DESC, seq DESC",
        (seal_ids, device_id, since),
    )
    last = {r["seal_id"]: r["status"] for r in found}
    return {s: last.get(s) for s in seal_ids}


def track(conn: Conn, device_id: str, lo: datetime, hi: datetime | None, points: int) -> Track:
    """The device's fixes in [lo, hi] as points; more than ``points`` fixes are
    averaged in ``time_bucket`` buckets of the span divided by ``points``."""
    span = {"device": device_id, "lo": lo, "hi": hi}
    size = row(
        conn,
        f"SELECT count(*) AS n, min(time) AS a, max(time) AS b FROM fixes WHERE {_RANGE}",
        span,
    )
    n = int(size["n"]) if size else 0
    if n > points and size and size["a"] and size["b"]:
        bucket_s = max(1.0, (size["b"] - size["a"]).total_seconds() / points)
        found = rows(
            conn,
            "SELECT time_bucket(make_interval(secs => %(bucket)s), time) AS time,"
            f" avg(lon) AS lon, avg(lat) AS lat FROM fixes WHERE {_RANGE}"
            " GROUP BY 1 ORDER BY 1",
            {**span, "bucket": bucket_s},
        )
        return Track(found, n, bucket_s)
    found = rows(conn, f"SELECT time, lon, lat FROM fixes WHERE {_RANGE} ORDER BY time", span)
    return Track(found, n, 0.0)


def fixes(conn: Conn, device_id: str, lo: datetime, hi: datetime | None) -> list[dict[str, Any]]:
    """Every fix of the device in [lo, hi], oldest first, with speed, course and HDOP."""
    return rows(
        conn,
        "SELECT time, lat, lon, speed_kmh, course_deg, hdop FROM fixes"
        f" WHERE {_RANGE} ORDER BY time",
        {"device": device_id, "lo": lo, "hi": hi},
    )


def stored(conn: Conn, device_ids: list[str], seqs: list[int]) -> int:
    """Telemetry rows stored for these devices' messages (fixes and seal events)."""
    if not device_ids:
        return 0
    return int(
        value(
            conn,
            "SELECT (SELECT count(*) FROM fixes WHERE device_id = ANY(%s) AND seq = ANY(%s))"
            " + (SELECT count(*) FROM seal_events WHERE device_id = ANY(%s) AND seq = ANY(%s))",
            (device_ids, seqs, device_ids, seqs),
        )
    )


def fixes_since(conn: Conn, device_ids: list[str], since: datetime) -> int:
    """How many fixes these devices have stored from ``since`` on."""
    return int(
        value(
            conn,
            "SELECT count(*) FROM fixes WHERE device_id = ANY(%s) AND time >= %s",
            (device_ids, since),
        )
    )
