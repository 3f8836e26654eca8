"""Reading telemetry (hypertables ``fixes`` and ``seal_events``): a tracker's newest
fix, its seals' last reports, its track (downsampled in the database when long).
Ingest writes them (:mod:`transit.db.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from transit.db.query import Conn, row, rows, value

# The fixes of a device in [lo, hi] (hi None: up to now).
_RANGE = (
    "device_id = %(device)s AND time >= %(lo)s AND (%(hi)s::timestamptz IS NULL OR time <= %(hi)s)"
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
