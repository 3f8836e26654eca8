"""Alerts (table ``alerts``): raised, given later evidence and cleared by ingest; the
lists and actions of the API; what the live feed and the transit views read of them.

An alert is *open* while its condition holds and nobody has resolved it
(:func:`open_sql`, the one definition, which the unique index ``alerts_one_live``
of the schema repeats); ``status`` is then ``open`` or ``acknowledged``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from transit.db.query import Conn, row, rows, run, value
from transit.db.visibility import Visibility
from transit.model import AlertEvent

EVIDENCE_KEPT = 50  # later evidence kept on an open alert (all are counted)

COLUMNS = (
    "a.id, a.mrn, a.device_id, a.type, a.cond_key, a.severity, a.status, a.event_time,"
    " a.raised_at, a.lat, a.lon, a.details, a.cleared_at, a.acknowledged_at,"
    " a.acknowledged_by, a.assignee, a.resolved_at, a.resolved_by, a.note"
)
# What the live feed sends of an alert, with its transit's itinerary to scope it.
_LIVE_COLUMNS = (
    "a.id, a.mrn, a.device_id, a.type, a.severity, a.status, a.event_time, a.raised_at,"
    " a.lat, a.lon, a.details, a.cleared_at, a.acknowledged_at, a.acknowledged_by,"
    " a.assignee, a.resolved_at, a.resolved_by, a.note,"
    " t.countries, t.office_departure, t.office_destination, t.offices_transit"
)
# How each action changes an alert; %(actor)s and %(note)s come with it.
_ACTIONS = {
    "acknowledge": "status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at,"
    " now()), acknowledged_by = coalesce(acknowledged_by, %(actor)s)",
    "assign": "assignee = %(assignee)s",
    "resolve": "status = 'resolved', resolved_at = now(), resolved_by = %(actor)s,"
    " note = %(note)s, acknowledged_at = coalesce(acknowledged_at, now()),"
    " acknowledged_by = coalesce(acknowledged_by, %(actor)s)",
}
Action = Literal["acknowledge", "assign", "resolve"]


def open_sql(a: str = "") -> str:
    """SQL: the alert (aliased ``a``, or unaliased) is open."""
    p = f"{a}." if a else ""
    return f"{p}cleared_at IS NULL AND {p}status <> 'resolved'"


def record(conn: Conn, events: list[AlertEvent]) -> list[int]:
    """Apply what the rules found: ``open`` raises an alert unless its condition's alert
    is open already (then it is evidence for it), ``evidence`` is attached to the open
    alert (the newest :data:`EVIDENCE_KEPT`, and a count of all), ``clear`` records
    that the condition ended. Returns the ids of the alerts raised."""
    raised: list[int] = []
    for a in events:
        new = None
        if a.action == "open":
            new = row(
                conn,
                "INSERT INTO alerts (mrn, device_id, type, cond_key, severity, event_time,"
                " lat, lon, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (mrn, type, cond_key) WHERE {open_sql()} DO NOTHING RETURNING id",
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
            )
            if new:
                raised.append(int(new["id"]))
        if a.action == "evidence" or (a.action == "open" and not new):
            seen = {"time": a.time.isoformat(), "lat": a.lat, "lon": a.lon, "details": a.details}
            run(
                conn,
                "UPDATE alerts SET details = details || jsonb_build_object("
                " 'evidence_count', coalesce((details->>'evidence_count')::int, 0) + 1,"
                " 'evidence', (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]') FROM ("
                "   SELECT e, n FROM jsonb_array_elements("
                "     coalesce(details->'evidence', '[]') || jsonb_build_array(%s::jsonb))"
                "   WITH ORDINALITY AS x(e, n) ORDER BY n DESC LIMIT %s) y))"
                f" WHERE mrn = %s AND type = %s AND cond_key = %s AND {open_sql()}",
                (json.dumps(seen), EVIDENCE_KEPT, a.mrn, a.type.value, a.key),
            )
        elif a.action == "clear":
            run(
                conn,
                "UPDATE alerts SET cleared_at = %s,"
                " details = details || jsonb_build_object('cleared', %s::jsonb)"
                f" WHERE mrn = %s AND type = %s AND cond_key = %s AND {open_sql()}",
                (a.time, json.dumps(a.details), a.mrn, a.type.value, a.key),
            )
    return raised


def open_keys(conn: Conn) -> set[tuple[str, str, str]]:
    """``(mrn, type, cond_key)`` of every open alert (ingest's rules start from them)."""
    found = rows(conn, f"SELECT mrn, type, cond_key FROM alerts WHERE {open_sql()}")
    return {(r["mrn"], r["type"], r["cond_key"]) for r in found}


def as_published(conn: Conn, alert_id: int) -> dict[str, Any] | None:
    """One alert as ingest publishes it to live consumers (times in ISO 8601)."""
    found = row(
        conn,
        "SELECT id, mrn, device_id, type, severity, status, event_time, raised_at, lat, lon,"
        " details, cleared_at FROM alerts WHERE id = %s",
        (alert_id,),
    )
    if found is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in found.items()}


def search(
    conn: Conn,
    vis: Visibility,
    mrn: str | None,
    type: str | None,
    status: str | None,
    severity: str | None,
    live: bool | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Alerts of visible transits, newest first; each filter applies when given
    (``live``: whether the condition still holds)."""
    where, params = vis.where("t")
    return rows(
        conn,
        f"SELECT {COLUMNS} FROM alerts a LEFT JOIN transits t ON t.mrn = a.mrn"
        " WHERE (%(mrn)s::text IS NULL OR a.mrn = %(mrn)s)"
        " AND (%(type)s::text IS NULL OR a.type = %(type)s)"
        " AND (%(status)s::text IS NULL OR a.status = %(status)s)"
        " AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)"
        " AND (%(live)s::bool IS NULL OR (a.cleared_at IS NULL) = %(live)s)"
        f" AND {where} ORDER BY a.raised_at DESC, a.id DESC LIMIT %(limit)s",
        {
            "mrn": mrn,
            "type": type,
            "status": status,
            "severity": severity,
            "live": live,
            "limit": limit,
            **params,
        },
    )


def status_for_update(conn: Conn, alert_id: int, vis: Visibility) -> str | None:
    """The alert's status, its row locked, if ``vis`` may see it (else None)."""
    where, params = vis.where("t")
    found = row(
        conn,
        "SELECT a.status FROM alerts a LEFT JOIN transits t ON t.mrn = a.mrn"
        f" WHERE a.id = %(id)s AND {where} FOR UPDATE OF a",
        {"id": alert_id, **params},
    )
    return str(found["status"]) if found else None


def act(conn: Conn, alert_id: int, action: Action, **values: str) -> None:
    """Apply an action to the alert with its values (``actor``, ``assignee``, ``note``)."""
    run(conn, f"UPDATE alerts SET {_ACTIONS[action]} WHERE id = %(id)s", {"id": alert_id, **values})


def get(conn: Conn, alert_id: int) -> dict[str, Any] | None:
    """One alert with every column the API shows."""
    return row(conn, f"SELECT {COLUMNS} FROM alerts a WHERE a.id = %s", (alert_id,))


def count_open(conn: Conn, mrn: str, type_prefix: str = "") -> int:
    """How many open alerts the transit has (of types starting with ``type_prefix``)."""
    return int(
        value(
            conn,
            f"SELECT count(*) FROM alerts WHERE mrn = %s AND type LIKE %s AND {open_sql()}",
            (mrn, type_prefix + "%"),
        )
    )


def of_transit(conn: Conn, mrn: str) -> list[dict[str, Any]]:
    """Every alert of a transit, by event time (for its report)."""
    return rows(
        conn,
        "SELECT type, severity, status, event_time, note FROM alerts WHERE mrn = %s"
        " ORDER BY event_time",
        (mrn,),
    )


def open_types(conn: Conn) -> dict[str, set[str]]:
    """The types of each transit's open alerts, by MRN."""
    found = rows(
        conn,
        f"SELECT mrn, array_agg(DISTINCT type) AS types FROM alerts"
        f" WHERE {open_sql()} AND mrn IS NOT NULL GROUP BY mrn",
    )
    return {r["mrn"]: set(r["types"]) for r in found}


def newest_id(conn: Conn) -> int:
    """The newest alert's id (0 when there is none)."""
    return int(value(conn, "SELECT coalesce(max(id), 0) FROM alerts"))


def changed(
    conn: Conn, after_id: int, worked_since: datetime | None = None
) -> list[dict[str, Any]]:
    """Alerts with an id after ``after_id``, and with ``worked_since`` those
    acknowledged, resolved or cleared since then; the newest 1000 at most, oldest
    first, each with its transit's itinerary (``countries``, ``office_*``,
    ``offices_transit``) to scope it."""
    where = "a.id > %(id)s" + (
        " OR a.acknowledged_at > %(since)s OR a.resolved_at > %(since)s OR a.cleared_at > %(since)s"
        if worked_since is not None
        else ""
    )
    return rows(
        conn,
        f"SELECT * FROM (SELECT {_LIVE_COLUMNS} FROM alerts a"
        f" LEFT JOIN transits t ON t.mrn = a.mrn WHERE {where}"
        " ORDER BY a.id DESC LIMIT 1000) x ORDER BY id",
        {"id": after_id, "since": worked_since},
    )
