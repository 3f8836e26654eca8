"""The Postgres store: batched, idempotent writes of telemetry, alerts and dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from transit.model import AlertEvent, Fix, SealEvent

Conn = psycopg.Connection[Any]

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS fixes_stage
  (time timestamptz, device_id text, seq bigint, idx integer, lat float8, lon float8,
   speed_kmh real, course_deg real, hdop real) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS seal_stage
  (time timestamptz, device_id text, seq bigint, seal_id text, status text, counter bigint,
   battery_pct real, lat float8, lon float8) ON COMMIT DELETE ROWS;
"""
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


EVIDENCE_KEPT = 50  # later evidence kept on an open alert (all are counted)


@dataclass(frozen=True)
class DeadLetter:
    """A message refused at the boundary, kept with its raw bytes for inspection."""

    source: str
    topic: str | None
    raw: bytes
    reason: str
    detail: str
    sig: str | None = None  # the message's HMAC user property, kept to verify a replay


@dataclass(frozen=True)
class ActiveTransit:
    """What ingest needs to know of a transit in progress."""

    mrn: str
    tracker_id: str
    corridor_id: str
    seal_ids: tuple[str, ...]
    countries: tuple[str, ...] = ()
    offices: tuple[str, ...] = ()  # departure, transit and destination
    time_limit: datetime | None = None
    # the corridor's thresholds with the transit's own over them
    thresholds: dict[str, float] = field(default_factory=dict)
    status: str = "in_transit"


def prepare_session(conn: Conn) -> None:
    """Create the session's staging tables (once per connection)."""
    create_staging(conn)
    conn.commit()


def create_staging(conn: Conn) -> None:
    """Create the staging tables if this session has none, in the caller's transaction."""
    conn.execute(_STAGE)


def write_batch(
    conn: Conn,
    fixes: list[Fix],
    seal_events: list[SealEvent],
    dead_letters: list[DeadLetter],
    alerts: list[AlertEvent],
) -> tuple[int, list[int]]:
    """Write one batch in one transaction. Returns (new fix rows, ids of new alerts).

    Rows go through binary COPY into a staging table, then into the hypertables with
    ``ON CONFLICT DO NOTHING``: a redelivered message writes nothing twice.
    """
    new_alert_ids: list[int] = []
    with conn.transaction():
        inserted = 0
        if fixes:
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY fixes_stage (time, device_id, seq, idx, lat, lon, speed_kmh,"
                    " course_deg, hdop) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(_FIX_TYPES)
                    for f in fixes:
                        cp.write_row(
                            (
                                f.time,
                                f.device_id,
                                f.seq,
                                f.idx,
                                f.lat,
                                f.lon,
                                f.speed_kmh,
                                f.course_deg,
                                f.hdop,
                            )
                        )
                cur.execute(
                    "INSERT INTO fixes (time, device_id, seq, idx, lat, lon, speed_kmh,"
                    " course_deg, hdop) SELECT * FROM fixes_stage ON CONFLICT DO NOTHING"
                )
                inserted = cur.rowcount
                # Each device's newest stored fix: the stale filter's reference.
                cur.execute(
                    "UPDATE devices d SET last_fix_time = s.t FROM (SELECT device_id,"
                    " max(time) AS t FROM fixes_stage GROUP BY device_id) s"
                    " WHERE d.device_id = s.device_id"
                    " AND (d.last_fix_time IS NULL OR d.last_fix_time < s.t)"
                )
        if seal_events:
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY seal_stage (time, device_id, seq, seal_id, status, counter,"
                    " battery_pct, lat, lon) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(_SEAL_TYPES)
                    for s in seal_events:
                        cp.write_row(
                            (
                                s.time,
                                s.device_id,
                                s.seq,
                                s.seal_id,
                                s.status.value,
                                s.counter,
                                s.battery_pct,
                                s.lat,
                                s.lon,
                            )
                        )
                cur.execute(
                    "INSERT INTO seal_events (time, device_id, seq, seal_id, status, counter,"
                    " battery_pct, lat, lon) SELECT * FROM seal_stage ON CONFLICT DO NOTHING"
                )
        senders = sorted({f.device_id for f in fixes} | {e.device_id for e in seal_events})
        if senders:
            # When each device was last heard: the watchdog's clock, shared by all workers.
            conn.execute(
                "UPDATE devices SET last_seen = now() WHERE device_id = ANY(%s)", (senders,)
            )
        if dead_letters:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO dead_letters (source, topic, raw, reason, detail, sig)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    [(d.source, d.topic, d.raw, d.reason, d.detail, d.sig) for d in dead_letters],
                )
        for a in alerts:
            row = None
            if a.action == "open":
                row = conn.execute(
                    "INSERT INTO alerts (mrn, device_id, type, cond_key, severity, event_time,"
                    " lat, lon, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (mrn, type, cond_key)"
                    " WHERE cleared_at IS NULL AND status <> 'resolved' DO NOTHING RETURNING id",
                    (
                        a.mrn,
                        a.device_id,
                        a.type.value,
                        a.key,
                        a.severity.value,
                        a.time,
                        a.lat,
                        a.lon,
                        json.dumps(a.details),
                    ),
                ).fetchone()
                if row:
                    new_alert_ids.append(int(row[0]))
            if a.action == "evidence" or (a.action == "open" and not row):
                # The condition's alert is open already: what came later is attached to
                # it (the newest EVIDENCE_KEPT entries, and a count of all).
                conn.execute(
                    "UPDATE alerts SET details = details || jsonb_build_object("
                    " 'evidence_count', coalesce((details->>'evidence_count')::int, 0) + 1,"
                    " 'evidence', (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]') FROM ("
                    "   SELECT e, n FROM jsonb_array_elements("
                    "     coalesce(details->'evidence', '[]') || jsonb_build_array(%s::jsonb))"
                    "   WITH ORDINALITY AS x(e, n) ORDER BY n DESC LIMIT %s) y))"
                    " WHERE mrn = %s AND type = %s AND cond_key = %s"
                    " AND cleared_at IS NULL AND status <> 'resolved'",
                    (
                        json.dumps(
                            {
                                "time": a.time.isoformat(),
                                "lat": a.lat,
                                "lon": a.lon,
                                "details": a.details,
                            }
                        ),
                        EVIDENCE_KEPT,
                        a.mrn,
                        a.type.value,
                        a.key,
                    ),
                )
            elif a.action == "clear":
                conn.execute(
                    "UPDATE alerts SET cleared_at = %s,"
                    " details = details || jsonb_build_object('cleared', %s::jsonb)"
                    " WHERE mrn = %s AND type = %s AND cond_key = %s"
                    " AND cleared_at IS NULL AND status <> 'resolved'",
                    (a.time, json.dumps(a.details), a.mrn, a.type.value, a.key),
                )
    return inserted, new_alert_ids


def save_worker_stats(
    conn: Conn, worker_id: str, pid: int, started: datetime, stats: dict[str, Any]
) -> None:
    """Upsert one ingest worker's counters."""
    conn.execute(
        "INSERT INTO ingest_workers (worker_id, pid, started_at, updated_at, stats)"
        " VALUES (%s, %s, %s, now(), %s) ON CONFLICT (worker_id) DO UPDATE SET"
        " pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, updated_at = now(),"
        " stats = EXCLUDED.stats",
        (worker_id, pid, started, json.dumps(stats)),
    )


def worker_stats(conn: Conn) -> list[tuple[str, float, dict[str, Any]]]:
    """Every worker's id, seconds since its last update, and counters."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT worker_id, extract(epoch FROM now() - updated_at)::float8, stats"
            " FROM ingest_workers ORDER BY worker_id"
        ).fetchall()
    return [(r[0], float(r[1]), r[2]) for r in rows]


def active_transits(conn: Conn) -> dict[str, ActiveTransit]:
    """Transits under way, keyed by their tracker's device id."""
    rows = conn.execute(
        "SELECT t.mrn, t.tracker_id, t.corridor_id, t.seal_ids, t.countries,"
        " t.office_departure || t.offices_transit || t.office_destination, t.time_limit,"
        " coalesce(c.properties->'thresholds', '{}') || coalesce(t.details->'thresholds', '{}'),"
        " t.status FROM transits t JOIN corridors c ON c.id = t.corridor_id"
        " WHERE t.status IN ('released', 'in_transit', 'overdue', 'arrived')"
    ).fetchall()
    return {
        r[1]: ActiveTransit(
            r[0], r[1], r[2], tuple(r[3]), tuple(r[4]), tuple(r[5]), r[6], dict(r[7]), r[8]
        )
        for r in rows
    }


@dataclass(frozen=True)
class LifecycleEvent:
    """A change of a transit's state that ingest found: depart, cross, arrive, overdue."""

    mrn: str
    action: str
    time: datetime
    details: dict[str, Any] = field(default_factory=dict)


_LIFECYCLE = {
    # action: (states it may start from, state it leads to, timestamp column)
    "depart": (["released"], "in_transit", None),
    "arrive": (["released", "in_transit", "overdue"], "arrived", "arrived_at"),
    "overdue": (["released", "in_transit"], "overdue", None),
    "cross": (["released", "in_transit", "overdue"], None, None),
}


def apply_lifecycle(conn: Conn, events: list[LifecycleEvent]) -> int:
    """Record what ingest found, in the batch's transaction: the state change (only from
    a state that allows it), the transit's timeline, the audit trail, and for a border
    crossing a notice to the country entered. Returns the changes applied."""
    from transit import audit, webhooks

    applied = 0
    for e in events:
        sources, target, column = _LIFECYCLE[e.action]
        if target is not None:
            row = conn.execute(
                "UPDATE transits SET status = %s"
                + (f", {column} = %s" if column else "")
                + " WHERE mrn = %s AND status = ANY(%s) RETURNING countries",
                (target, e.time, e.mrn, sources) if column else (target, e.mrn, sources),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT countries FROM transits WHERE mrn = %s AND status = ANY(%s)",
                (e.mrn, sources),
            ).fetchone()
        if row is None:
            continue
        kind = {"depart": "departed", "arrive": "arrived", "cross": "crossed"}.get(
            e.action, e.action
        )
        details = {"event_time": e.time.isoformat(), **e.details}
        if e.action == "overdue":
            details["enquiry"] = "opened"
        conn.execute(
            "INSERT INTO transit_events (mrn, kind, actor, details) VALUES (%s, %s, 'ingest', %s)",
            (e.mrn, kind, json.dumps(details, default=str)),
        )
        audit.append(conn, "ingest", f"transit.{kind}", e.mrn, details)
        if e.action == "cross" and e.details.get("to"):
            webhooks.enqueue(conn, "crossing", e.mrn, [e.details["to"]], {"mrn": e.mrn, **details})
        applied += 1
    return applied


def device_keys(conn: Conn, only: list[str] | None = None) -> dict[str, bytes | None]:
    """Registered devices (all, or ``only`` those) with their HMAC key (None: unsigned)."""
    rows = conn.execute(
        "SELECT device_id, hmac_key FROM devices WHERE %s::text[] IS NULL OR device_id = ANY(%s)",
        (only, only),
    ).fetchall()
    return {r[0]: (bytes(r[1]) if r[1] is not None else None) for r in rows}


def open_alert_keys(conn: Conn) -> set[tuple[str, str, str]]:
    """``(mrn, type, cond_key)`` of every alert whose condition still holds."""
    rows = conn.execute(
        "SELECT mrn, type, cond_key FROM alerts WHERE cleared_at IS NULL AND status <> 'resolved'"
    ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def corridor_rows(
    conn: Conn,
) -> list[tuple[str, str, float, dict[str, Any], list[str], dict[str, Any]]]:
    """Every corridor as stored: id, name, width, GeoJSON route, countries, properties."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT id, name, width_m, route, countries, properties FROM corridors ORDER BY id"
        ).fetchall()
    return [(r[0], r[1], float(r[2]), r[3], list(r[4]), r[5]) for r in rows]


def last_seen(conn: Conn, device_ids: list[str]) -> dict[str, datetime]:
    """When each of these devices was last heard, by the database's clock."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT device_id, last_seen FROM devices"
            " WHERE device_id = ANY(%s) AND last_seen IS NOT NULL",
            (device_ids,),
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def office_rows(conn: Conn) -> list[tuple[str, str, str, tuple[str, ...], float, float, float]]:
    """Every office as the geofence needs it: ref, name, country, roles, lon, lat, radius."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT ref, name, country, roles, lon, lat, radius_m FROM offices ORDER BY ref"
        ).fetchall()
    return [(r[0], r[1], r[2], tuple(r[3]), float(r[4]), float(r[5]), float(r[6])) for r in rows]


def alert_as_json(conn: Conn, alert_id: int) -> dict[str, Any] | None:
    """One alert as the API and the live topic show it."""
    row = conn.execute(
        "SELECT id, mrn, device_id, type, severity, status, event_time, raised_at, lat, lon,"
        " details, cleared_at FROM alerts WHERE id = %s",
        (alert_id,),
    ).fetchone()
    if not row:
        return None
    keys = [
        "id",
        "mrn",
        "device_id",
        "type",
        "severity",
        "status",
        "event_time",
        "raised_at",
        "lat",
        "lon",
        "details",
        "cleared_at",
    ]
    out = dict(zip(keys, row, strict=True))
    for k in ("event_time", "raised_at", "cleared_at"):
        v = out[k]
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out
