"""Transits and their timeline (tables ``transits`` and ``transit_events``).

Every read for a caller takes its :class:`~transit.db.visibility.Visibility`, so a
transit it may not see is simply not found.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import tuple_row

from transit import lifecycle
from transit.db import alerts
from transit.db.query import Conn, row, rows, run
from transit.db.visibility import Visibility
from transit.ingest.types import ActiveTransit
from transit.model import is_valid_mrn

# A transit with its newest fix, its count of open alerts and its risk score, for one
# transit or a list.
_VIEW = f"""
SELECT t.*, f.time AS fix_time, f.lat AS fix_lat, f.lon AS fix_lon,
       f.speed_kmh AS fix_speed_kmh,
       (SELECT count(*) FROM alerts a WHERE a.mrn = t.mrn AND {alerts.open_sql("a")})
       AS open_alerts,
       r.probability AS risk_probability, r.level AS risk_level, r.reasons AS risk_reasons,
       r.updated_at AS risk_updated_at
FROM transits t
LEFT JOIN transit_risk r ON r.mrn = t.mrn
LEFT JOIN LATERAL (
    SELECT time, lat, lon, speed_kmh FROM fixes
    WHERE device_id = t.tracker_id AND time >= t.declared_at ORDER BY time DESC LIMIT 1
) f ON true
"""

# Each truck under way with its newest fix (from an hour before its declaration on).
_POSITIONS = """
SELECT t.mrn, t.tracker_id, t.corridor_id, t.countries, t.office_departure,
       t.office_destination, t.offices_transit, f.time, f.lon, f.lat, f.speed_kmh
FROM transits t
JOIN LATERAL (
    SELECT time, lon, lat, speed_kmh FROM fixes
    WHERE device_id = t.tracker_id AND time >= t.declared_at - interval '1 hour'
    ORDER BY time DESC LIMIT 1
) f ON true
WHERE t.status = ANY(%s)
"""

Stamp = Literal["released_at", "arrived_at", "closed_at"]


def get(conn: Conn, mrn: str, vis: Visibility, lock: bool = False) -> dict[str, Any] | None:
    """The transit's row if ``vis`` may see it (locked for update with ``lock``)."""
    where, params = vis.where("t")
    return row(
        conn,
        f"SELECT * FROM transits t WHERE t.mrn = %(mrn)s AND {where}"
        + (" FOR UPDATE" if lock else ""),
        {"mrn": mrn, **params},
    )


def view(conn: Conn, mrn: str, vis: Visibility) -> dict[str, Any] | None:
    """The transit with ``fix_*`` (its newest fix) and ``open_alerts``, if visible."""
    where, params = vis.where("t")
    return row(conn, _VIEW + f" WHERE t.mrn = %(mrn)s AND {where}", {"mrn": mrn, **params})


# The orders a list may take: by declaration or by risk (unscored transits last).
SORTS = {
    "-declared_at": "t.declared_at DESC",
    "declared_at": "t.declared_at",
    "-risk": "r.probability DESC NULLS LAST, t.declared_at DESC",
    "risk": "r.probability NULLS LAST, t.declared_at DESC",
}


def view_list(
    conn: Conn,
    vis: Visibility,
    status: str | None,
    country: str | None,
    limit: int,
    *,
    sort: str = "-declared_at",
    risk_level: str | None = None,
    finished: bool | None = None,
) -> list[dict[str, Any]]:
    """The visible transits as :func:`view` gives one, in the order ``sort`` names
    (:data:`SORTS`), optionally of one status, through one country, of one risk level,
    finished (closed or cancelled) or not."""
    where, params = vis.where("t")
    return rows(
        conn,
        _VIEW + " WHERE (%(status)s::text IS NULL OR t.status = %(status)s)"
        " AND (%(country)s::text IS NULL OR %(country)s = ANY(t.countries))"
        " AND (%(level)s::text IS NULL OR r.level = %(level)s)"
        " AND (%(finished)s::boolean IS NULL OR (t.status = ANY(%(done)s)) = %(finished)s)"
        f" AND {where} ORDER BY {SORTS[sort]} LIMIT %(limit)s",
        {
            "status": status,
            "country": country,
            "level": risk_level,
            "finished": finished,
            "done": sorted(lifecycle.FINISHED),
            "limit": limit,
            **params,
        },
    )


def tracker_busy(conn: Conn, tracker_id: str, statuses: list[str]) -> str | None:
    """The MRN of a transit in one of ``statuses`` that this tracker follows, if any."""
    found = row(
        conn,
        "SELECT mrn FROM transits WHERE tracker_id = %s AND status = ANY(%s)",
        (tracker_id, statuses),
    )
    return found["mrn"] if found else None


def declare(
    conn: Conn,
    *,
    mrn: str,
    tracker_id: str,
    corridor_id: str,
    office_departure: str,
    office_destination: str,
    countries: list[str],
    time_limit: datetime,
    seal_ids: list[str] | None = None,
    offices_transit: list[str] | None = None,
    vehicle: str | None = None,
    status: str = "declared",
    details: dict[str, Any] | None = None,
    replace: bool = True,
) -> bool:
    """Record a declaration in ``status`` (released from now on unless ``declared``).

    With ``replace`` a declaration with the same MRN is replaced (a simulated fleet
    declared again); without, it is kept and False returned."""
    if not is_valid_mrn(mrn):
        raise ValueError(f"MRN {mrn!r} is malformed or its check digit is wrong")
    if replace:  # a declaration replaced is a new journey: its score starts afresh
        run(conn, "DELETE FROM transit_risk WHERE mrn = %s", (mrn,))
    conflict = (
        " ON CONFLICT (mrn) DO UPDATE SET status = EXCLUDED.status,"
        " tracker_id = EXCLUDED.tracker_id, corridor_id = EXCLUDED.corridor_id,"
        " seal_ids = EXCLUDED.seal_ids, time_limit = EXCLUDED.time_limit,"
        " released_at = EXCLUDED.released_at, arrived_at = NULL, closed_at = NULL,"
        " details = EXCLUDED.details"
        if replace
        else " ON CONFLICT (mrn) DO NOTHING"
    )
    done = row(
        conn,
        "INSERT INTO transits (mrn, status, tracker_id, corridor_id, vehicle, seal_ids,"
        " office_departure, offices_transit, office_destination, countries, time_limit,"
        " released_at, details)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " CASE WHEN %s = 'declared' THEN NULL ELSE now() END, %s)" + conflict + " RETURNING mrn",
        (
            mrn,
            status,
            tracker_id,
            corridor_id,
            vehicle,
            seal_ids or [],
            office_departure,
            offices_transit or [],
            office_destination,
            countries,
            time_limit,
            status,
            json.dumps(details or {}),
        ),
    )
    return done is not None


def under_way(conn: Conn) -> dict[str, ActiveTransit]:
    """Transits under way as ingest follows them, keyed by their tracker's device id;
    their thresholds are the corridor's with the transit's own over them."""
    found = rows(
        conn,
        "SELECT t.mrn, t.tracker_id, t.corridor_id, t.seal_ids, t.countries,"
        " t.office_departure || t.offices_transit || t.office_destination AS offices,"
        " t.time_limit, coalesce(c.properties->'thresholds', '{}')"
        " || coalesce(t.details->'thresholds', '{}') AS thresholds,"
        " t.status FROM transits t JOIN corridors c ON c.id = t.corridor_id"
        " WHERE t.status = ANY(%s)",
        ([s.value for s in lifecycle.UNDER_WAY],),
    )
    return {
        r["tracker_id"]: ActiveTransit(
            r["mrn"],
            r["tracker_id"],
            r["corridor_id"],
            tuple(r["seal_ids"]),
            tuple(r["countries"]),
            tuple(r["offices"]),
            r["time_limit"],
            dict(r["thresholds"]),
            lifecycle.State(r["status"]),
        )
        for r in found
    }


def lock_state(conn: Conn, mrn: str) -> str | None:
    """The transit's state, its row locked until the transaction ends (None: no such
    transit): what a change of state is decided from."""
    found = row(conn, "SELECT status FROM transits WHERE mrn = %s FOR UPDATE", (mrn,))
    return str(found["status"]) if found else None


def set_state(
    conn: Conn, mrn: str, status: str | None, stamp: Stamp | None, at: datetime | None = None
) -> None:
    """Move the transit to ``status`` (None: keep it) and set ``stamp`` (None: none) to
    ``at`` (None: now). The lifecycle decides ``status``; this only writes it."""
    assert stamp in (None, "released_at", "arrived_at", "closed_at")
    sets = [] if status is None else ["status = %(status)s"]
    if stamp is not None:
        sets.append(f"{stamp} = coalesce(%(at)s::timestamptz, now())")
    if sets:
        run(
            conn,
            f"UPDATE transits SET {', '.join(sets)} WHERE mrn = %(mrn)s",
            {"status": status, "at": at, "mrn": mrn},
        )


def finish_other_transits(conn: Conn, tracker_id: str, keep_mrn: str) -> None:
    """A tracker follows one transit at a time: close the others it was on (en route)."""
    run(
        conn,
        "UPDATE transits SET status = %s, closed_at = now()"
        " WHERE tracker_id = %s AND mrn <> %s AND status = ANY(%s)",
        (lifecycle.State.CLOSED, tracker_id, keep_mrn, sorted(lifecycle.EN_ROUTE)),
    )


def add_event(conn: Conn, mrn: str, kind: str, actor: str, details: dict[str, Any]) -> None:
    """Add an entry to the transit's timeline."""
    run(
        conn,
        "INSERT INTO transit_events (mrn, kind, actor, details) VALUES (%s, %s, %s, %s)",
        (mrn, kind, actor, json.dumps(details, default=str)),
    )


def events(conn: Conn, mrn: str) -> list[dict[str, Any]]:
    """The transit's timeline, oldest first."""
    return rows(
        conn,
        "SELECT at, kind, actor, details FROM transit_events WHERE mrn = %s ORDER BY at, id",
        (mrn,),
    )


def positions(conn: Conn, statuses: list[str]) -> list[tuple[Any, ...]]:
    """Each transit in ``statuses`` with a fix, as tuples: mrn, tracker, corridor,
    countries, office of departure, of destination, of transit, and its newest fix's
    time, lon, lat and speed (the live feed reads them once a second)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(_POSITIONS, (statuses,)).fetchall()
