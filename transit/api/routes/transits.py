"""Transits: declare, release, close at the exit border, cancel, incidents, the track.

Officers act for their own office (declare, release and cancel at the office of
departure; close at the office of destination or exit); a partner sees the transits
whose itinerary includes its country, without the holder's contacts or guarantee.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from html import escape
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from transit import audit, lifecycle, webhooks
from transit.api import declaration
from transit.api.deps import Db, as_json, field_error, iso
from transit.api.routes.transit_schemas import CancelIn, CloseIn, IncidentIn, MrnPath, TransitIn
from transit.api.security import Caller
from transit.geofence.corridor import Office
from transit.keys import Principal
from transit.lifecycle import Action, CloseFacts, Refused, ReleaseFacts, SealFact, State

router = APIRouter(tags=["transits"])

TRACKER_FRESH_S = 600  # release needs a tracker report this recent
PARTNER_FIELDS = (
    "mrn",
    "status",
    "corridor_id",
    "vehicle",
    "seal_ids",
    "office_departure",
    "offices_transit",
    "office_destination",
    "countries",
    "time_limit",
    "declared_at",
    "released_at",
    "arrived_at",
    "closed_at",
    "last_fix",
)


def _refused(exc: Refused) -> HTTPException:
    return HTTPException(409, detail={"refused": exc.reasons})


def _load(db: Db, mrn: str, who: Principal, lock: bool = False) -> dict[str, Any]:
    """A transit the caller may see (404 otherwise, so nothing leaks about others)."""
    row = db.execute(
        "SELECT * FROM transits WHERE mrn = %s" + (" FOR UPDATE" if lock else ""), (mrn,)
    ).fetchone()
    if row is None or not _visible(row, who):
        raise HTTPException(404, detail=f"no transit with MRN {mrn}")
    return dict(row)


def _visible(row: dict[str, Any], who: Principal) -> bool:
    if who.role == "partner":
        return who.country in row["countries"]
    if who.role == "officer":
        offices = {row["office_departure"], row["office_destination"], *row["offices_transit"]}
        return who.office in offices
    return True


def _require_office(who: Principal, office: str, what: str) -> None:
    if who.role == "officer" and who.office != office:
        raise HTTPException(
            403,
            detail=f"only an officer of {office} may {what} (this key is bound to {who.office})",
        )


def _event(db: Db, mrn: str, kind: str, who: Principal | str, details: dict[str, Any]) -> None:
    actor = who if isinstance(who, str) else who.actor
    db.execute(
        "INSERT INTO transit_events (mrn, kind, actor, details) VALUES (%s, %s, %s, %s)",
        (mrn, kind, actor, json.dumps(details, default=str)),
    )
    audit.append(db, actor, f"transit.{kind}", mrn, details)


# A transit with its newest fix and its count of open alerts, in one query for one
# transit or a list of them.
VIEW_SQL = """
SELECT t.*, f.time AS fix_time, f.lat AS fix_lat, f.lon AS fix_lon,
       f.speed_kmh AS fix_speed_kmh,
       (SELECT count(*) FROM alerts a WHERE a.mrn = t.mrn AND a.status <> 'resolved'
        AND a.cleared_at IS NULL) AS open_alerts
FROM transits t
LEFT JOIN LATERAL (
    SELECT time, lat, lon, speed_kmh FROM fixes
    WHERE device_id = t.tracker_id AND time >= t.declared_at ORDER BY time DESC LIMIT 1
) f ON true
"""


def _public(row: dict[str, Any], who: Principal) -> dict[str, Any]:
    """A row of ``VIEW_SQL`` as the caller may see it."""
    fix = {k[4:]: iso(row.pop(k)) for k in ("fix_time", "fix_lat", "fix_lon", "fix_speed_kmh")}
    details = row.pop("details", None) or {}
    out = as_json(row)
    out["last_fix"] = fix if fix["time"] is not None else None
    if who.role == "partner":
        return {k: out.get(k) for k in PARTNER_FIELDS}
    out["driver"] = details.get("driver")
    out["guarantee"] = details.get("guarantee")
    out["thresholds"] = details.get("thresholds")
    return out


def _view(db: Db, mrn: str, who: Principal) -> dict[str, Any]:
    """One transit as the caller may see it (404 when it may not)."""
    row = db.execute(VIEW_SQL + " WHERE t.mrn = %s", (mrn,)).fetchone()
    if row is None or not _visible(row, who):
        raise HTTPException(404, detail=f"no transit with MRN {mrn}")
    return _public(dict(row), who)


@router.post("/transits", status_code=201)
def declare(db: Db, who: Caller, body: TransitIn) -> dict[str, Any]:
    """Declare a transit (NCTS IE015). An officer declares at their own office."""
    _require_office(who, body.office_departure, "declare a transit departing from it")
    declaration.check(db, body, datetime.now(UTC))
    dev = db.execute("SELECT kind FROM devices WHERE device_id = %s", (body.tracker_id,)).fetchone()
    if dev is None or dev["kind"] != "tracker":
        raise field_error("tracker_id", f"{body.tracker_id} is not a registered tracker")
    if len(set(body.seal_ids)) != len(body.seal_ids):
        raise field_error("seal_ids", "a seal is declared twice")
    busy = db.execute(
        "SELECT mrn FROM transits WHERE tracker_id = %s AND status = ANY(%s)",
        (body.tracker_id, [s.value for s in lifecycle.UNDER_WAY] + ["declared"]),
    ).fetchone()
    if busy:
        raise field_error("tracker_id", f"{body.tracker_id} is on transit {busy['mrn']}")
    details = {
        "driver": body.driver.model_dump() if body.driver else None,
        "guarantee": body.guarantee.model_dump() if body.guarantee else None,
    }
    if body.thresholds:
        details["thresholds"] = body.thresholds
    try:
        db.execute(
            "INSERT INTO transits (mrn, status, tracker_id, corridor_id, vehicle, seal_ids,"
            " office_departure, offices_transit, office_destination, countries, time_limit,"
            " details) VALUES (%s, 'declared', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                body.mrn,
                body.tracker_id,
                body.corridor_id,
                body.vehicle,
                body.seal_ids,
                body.office_departure,
                body.offices_transit,
                body.office_destination,
                body.countries,
                body.time_limit,
                json.dumps(details),
            ),
        )
    except psycopg.errors.UniqueViolation:
        db.rollback()
        raise field_error("mrn", f"a transit with MRN {body.mrn} exists already") from None
    _event(db, body.mrn, "declared", who, {"office": body.office_departure})
    db.commit()
    return _view(db, body.mrn, who)


@router.get("/transits")
def list_transits(
    db: Db,
    who: Caller,
    status: State | None = None,
    country: Annotated[str | None, Query(pattern="^[A-Z]{2}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Transits the caller may see, newest first."""
    rows = db.execute(
        VIEW_SQL + " WHERE (%s::text IS NULL OR t.status = %s)"
        " AND (%s::text IS NULL OR %s = ANY(t.countries))"
        " AND (%s::text IS NULL OR %s = ANY(t.countries))"
        " AND (%s::text IS NULL OR %s = t.office_departure OR %s = t.office_destination"
        "      OR %s = ANY(t.offices_transit))"
        " ORDER BY t.declared_at DESC LIMIT %s",
        (
            status,
            status,
            country,
            country,
            who.country,
            who.country,
            who.office,
            who.office,
            who.office,
            who.office,
            limit,
        ),
    ).fetchall()
    items = [_public(dict(r), who) for r in rows]
    return {"count": len(items), "items": items}


@router.get("/transits/{mrn}")
def get_transit(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """A transit: its declaration, status, last position and open alerts."""
    return _view(db, mrn, who)


@router.get("/transits/{mrn}/events")
def transit_events(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """The transit's timeline: state changes, crossings, incidents, closure."""
    _load(db, mrn, who)
    rows = db.execute(
        "SELECT at, kind, actor, details FROM transit_events WHERE mrn = %s ORDER BY at, id",
        (mrn,),
    ).fetchall()
    return {"mrn": mrn, "items": [as_json(r) for r in rows]}


def _seal_facts(db: Db, row: dict[str, Any]) -> list[SealFact]:
    out = []
    for seal in row["seal_ids"]:
        last = db.execute(
            "SELECT status FROM seal_events WHERE seal_id = %s AND device_id = %s"
            " AND time >= %s - interval '1 day' ORDER BY time DESC, seq DESC LIMIT 1",
            (seal, row["tracker_id"], row["declared_at"]),
        ).fetchone()
        status = last["status"] if last else None
        out.append(SealFact(seal, last is not None, status, status == "sealed"))
    return out


@router.post("/transits/{mrn}/release")
def release(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """Release for transit (IE029) after the departure checks; partners on the itinerary
    get an anticipated-arrival notice."""
    row = _load(db, mrn, who, lock=True)
    _require_office(who, row["office_departure"], "release it")
    seen = db.execute(
        "SELECT last_seen >= now() - make_interval(secs => %s) AS fresh FROM devices"
        " WHERE device_id = %s",
        (TRACKER_FRESH_S, row["tracker_id"]),
    ).fetchone()
    facts = ReleaseFacts(bool(seen and seen["fresh"]), _seal_facts(db, row))
    try:
        lifecycle.release(State(row["status"]), facts)
    except Refused as exc:
        db.rollback()
        raise _refused(exc) from None
    db.execute(
        "UPDATE transits SET status = 'released', released_at = now() WHERE mrn = %s", (mrn,)
    )
    for seal in row["seal_ids"]:
        db.execute(
            "INSERT INTO seals (seal_id, manufacturer, serial, tracker_id, status, armed)"
            " VALUES (%s, '', %s, %s, 'sealed', true) ON CONFLICT (seal_id) DO UPDATE SET"
            " tracker_id = EXCLUDED.tracker_id, status = 'sealed', armed = true",
            (seal, seal, row["tracker_id"]),
        )
    _event(db, mrn, "released", who, {"office": row["office_departure"]})
    notice = {
        "event": "anticipated_arrival",
        "mrn": mrn,
        "vehicle": row["vehicle"],
        "seal_ids": row["seal_ids"],
        "corridor_id": row["corridor_id"],
        "office_departure": row["office_departure"],
        "offices_transit": row["offices_transit"],
        "office_destination": row["office_destination"],
        "countries": row["countries"],
        "time_limit": iso(row["time_limit"]),
    }
    webhooks.enqueue(db, "anticipated_arrival", mrn, list(row["countries"]), notice)
    db.commit()
    return _view(db, mrn, who)


@router.post("/transits/{mrn}/close")
def close(db: Db, who: Caller, mrn: Annotated[str, MrnPath], body: CloseIn) -> dict[str, Any]:
    """Close at the office of destination or exit: the truck inside that office's
    geofence, every declared seal reporting sealed, no seal alert open. Otherwise 409
    with the reasons, unless the officer records a finding: then it closes with an
    incident. The seals are disarmed."""
    row = _load(db, mrn, who, lock=True)
    _require_office(who, row["office_destination"], "close it")
    office = db.execute(
        "SELECT ref, name, country, roles, lon, lat, radius_m FROM offices WHERE ref = %s",
        (row["office_destination"],),
    ).fetchone()
    last = db.execute(
        "SELECT lon, lat FROM fixes WHERE device_id = %s AND time >= %s ORDER BY time DESC LIMIT 1",
        (row["tracker_id"], row["declared_at"]),
    ).fetchone()
    inside = bool(
        office
        and last
        and Office(
            office["ref"],
            office["name"],
            office["country"],
            tuple(office["roles"]),
            office["lon"],
            office["lat"],
            office["radius_m"],
        ).contains(last["lon"], last["lat"])
    )
    seal_alerts = db.execute(
        "SELECT count(*) AS n FROM alerts WHERE mrn = %s AND type LIKE 'seal_%%'"
        " AND status <> 'resolved' AND cleared_at IS NULL",
        (mrn,),
    ).fetchone()
    facts = CloseFacts(
        officer_office=who.office if who.role == "officer" else None,
        destination=row["office_destination"],
        inside_office=inside,
        seals=_seal_facts(db, row),
        open_seal_alerts=int(seal_alerts["n"]) if seal_alerts else 0,
        finding=body.finding,
    )
    state = State(row["status"])
    try:
        arrived = lifecycle.arrival_at_closing(state, facts)
        if arrived is not state:
            state = arrived
            db.execute("UPDATE transits SET arrived_at = now() WHERE mrn = %s", (mrn,))
            _event(db, mrn, "arrived", who, {"office": row["office_destination"]})
        _, problems = lifecycle.close(state, facts)
    except Refused as exc:
        db.rollback()
        raise _refused(exc) from None
    if problems:
        code = body.incident_code or (2 if any("seal" in p for p in problems) else 6)
        _event(
            db,
            mrn,
            "incident",
            who,
            {
                "code": code,
                "code_text": lifecycle.incident_code(code),
                "description": body.finding,
                "checks_failed": problems,
            },
        )
    db.execute("UPDATE transits SET status = 'closed', closed_at = now() WHERE mrn = %s", (mrn,))
    db.execute(
        "UPDATE seals SET armed = false, status = 'disarmed' WHERE seal_id = ANY(%s)",
        (row["seal_ids"],),
    )
    _event(
        db,
        mrn,
        "closed",
        who,
        {
            "office": row["office_destination"],
            "decision": "closed with incident" if problems else "closed",
            "checks_failed": problems,
            "seals_disarmed": row["seal_ids"],
        },
    )
    db.commit()
    return _view(db, mrn, who)


@router.post("/transits/{mrn}/cancel")
def cancel(db: Db, who: Caller, mrn: Annotated[str, MrnPath], body: CancelIn) -> dict[str, Any]:
    """Cancel a declaration before the truck leaves the office of departure."""
    row = _load(db, mrn, who, lock=True)
    _require_office(who, row["office_departure"], "cancel it")
    try:
        lifecycle.transition(State(row["status"]), Action.CANCEL)
    except Refused as exc:
        db.rollback()
        raise _refused(exc) from None
    db.execute("UPDATE transits SET status = 'cancelled', closed_at = now() WHERE mrn = %s", (mrn,))
    _event(db, mrn, "cancelled", who, {"reason": body.reason})
    db.commit()
    return _view(db, mrn, who)


@router.post("/transits/{mrn}/incidents", status_code=201)
def record_incident(
    db: Db, who: Caller, mrn: Annotated[str, MrnPath], body: IncidentIn
) -> dict[str, Any]:
    """Record an incident (NCTS CL019 codes 1 to 6) against a transit under way."""
    row = _load(db, mrn, who, lock=True)
    try:
        lifecycle.transition(State(row["status"]), Action.INCIDENT)
    except Refused as exc:
        db.rollback()
        raise _refused(exc) from None
    details = body.model_dump() | {"code_text": lifecycle.incident_code(body.code)}
    _event(db, mrn, "incident", who, details)
    db.commit()
    return {"mrn": mrn, "incident": details}


@router.get("/transits/{mrn}/track")
def get_track(
    db: Db,
    who: Caller,
    mrn: Annotated[str, MrnPath],
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    points: Annotated[int, Query(ge=2, le=20000)] = 2000,
) -> dict[str, Any]:
    """The track as GeoJSON: a LineString with its times. When the range holds more
    than ``points`` fixes, they are averaged in ``time_bucket`` buckets."""
    tr = _load(db, mrn, who)
    lo = start or tr["declared_at"]
    hi = end or (tr["closed_at"] if tr["status"] in ("closed", "cancelled") else None)
    span = db.execute(
        "SELECT count(*) AS n, min(time) AS a, max(time) AS b FROM fixes WHERE device_id = %s"
        " AND time >= %s AND (%s::timestamptz IS NULL OR time <= %s)",
        (tr["tracker_id"], lo, hi, hi),
    ).fetchone()
    n = int(span["n"]) if span else 0
    bucket_s = 0.0
    if n > points and span and span["a"] and span["b"]:
        bucket_s = max(1.0, (span["b"] - span["a"]).total_seconds() / points)
        rows = db.execute(
            "SELECT time_bucket(make_interval(secs => %s), time) AS time,"
            " avg(lon) AS lon, avg(lat) AS lat FROM fixes WHERE device_id = %s"
            " AND time >= %s AND (%s::timestamptz IS NULL OR time <= %s)"
            " GROUP BY 1 ORDER BY 1",
            (bucket_s, tr["tracker_id"], lo, hi, hi),
        ).fetchall()
    else:
        rows = db.execute(
            "SELECT time, lon, lat FROM fixes WHERE device_id = %s AND time >= %s"
            " AND (%s::timestamptz IS NULL OR time <= %s) ORDER BY time",
            (tr["tracker_id"], lo, hi, hi),
        ).fetchall()
    coords = [[r["lon"], r["lat"]] for r in rows]
    times = [r["time"].isoformat() for r in rows]
    geometry: dict[str, Any] = (
        {"type": "LineString", "coordinates": coords}
        if len(coords) >= 2
        else {"type": "MultiPoint", "coordinates": coords}
    )
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "mrn": mrn,
                    "device_id": tr["tracker_id"],
                    "times": times,
                    "fixes": n,
                    "bucket_s": bucket_s,
                },
            }
        ],
    }


def _track_rows(db: Db, tr: dict[str, Any]) -> list[dict[str, Any]]:
    hi = tr["closed_at"] if tr["status"] in ("closed", "cancelled") else None
    return list(
        db.execute(
            "SELECT time, lat, lon, speed_kmh, course_deg, hdop FROM fixes WHERE device_id = %s"
            " AND time >= %s AND (%s::timestamptz IS NULL OR time <= %s) ORDER BY time",
            (tr["tracker_id"], tr["declared_at"], hi, hi),
        ).fetchall()
    )


@router.get("/transits/{mrn}/track.gpx", response_class=Response)
def track_gpx(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> Response:
    """The whole track as GPX 1.1 (one track, one segment, every fix with its time)."""
    tr = _load(db, mrn, who)
    pts = "".join(
        f'<trkpt lat="{r["lat"]:.7f}" lon="{r["lon"]:.7f}"><time>'
        f"{r['time'].astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}</time></trkpt>"
        for r in _track_rows(db, tr)
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<gpx version="1.1" creator="transit" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><name>{escape(mrn)}</name><trkseg>{pts}</trkseg></trk></gpx>"
    )
    return Response(
        body,
        media_type="application/gpx+xml",
        headers={"Content-Disposition": f'attachment; filename="{mrn}.gpx"'},
    )


@router.get("/transits/{mrn}/track.csv", response_class=Response)
def track_csv(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> Response:
    """The whole track as CSV: time, lat, lon, speed, course, HDOP."""
    tr = _load(db, mrn, who)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "lat", "lon", "speed_kmh", "course_deg", "hdop"])
    for r in _track_rows(db, tr):
        w.writerow(
            [r["time"].isoformat(), r["lat"], r["lon"], r["speed_kmh"], r["course_deg"], r["hdop"]]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{mrn}.csv"'},
    )


@router.get("/transits/{mrn}/report", response_class=HTMLResponse)
def report(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> HTMLResponse:
    """A one-page transit report an officer can print."""
    tr = _load(db, mrn, who)
    info = _view(db, mrn, who)
    events = db.execute(
        "SELECT at, kind, actor, details FROM transit_events WHERE mrn = %s ORDER BY at, id",
        (mrn,),
    ).fetchall()
    alerts = db.execute(
        "SELECT type, severity, status, event_time, note FROM alerts WHERE mrn = %s"
        " ORDER BY event_time",
        (mrn,),
    ).fetchall()
    rows = _track_rows(db, tr)

    def cell(v: Any) -> str:
        return escape(str(iso(v)) if v is not None else "")

    facts = [
        ("MRN", mrn),
        ("Status", info["status"]),
        ("Vehicle", info.get("vehicle")),
        ("Tracker", tr["tracker_id"]),
        ("Seals", ", ".join(tr["seal_ids"])),
        ("Corridor", tr["corridor_id"]),
        ("Departure", tr["office_departure"]),
        ("Offices of transit", ", ".join(tr["offices_transit"])),
        ("Destination / exit", tr["office_destination"]),
        ("Countries", " > ".join(tr["countries"])),
        ("Time limit", tr["time_limit"]),
        ("Released", tr["released_at"]),
        ("Arrived", tr["arrived_at"]),
        ("Closed", tr["closed_at"]),
        ("Fixes", len(rows)),
    ]
    html = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Transit {escape(mrn)}</title><style>",
        "body{font:12px/1.4 sans-serif;margin:16mm}h1{font-size:18px}table{border-collapse:",
        "collapse;width:100%;margin-bottom:10px}td,th{border:1px solid #999;padding:2px 4px;",
        "text-align:left;vertical-align:top}th{background:#eee}@page{size:A4;margin:12mm}",
        "@media print{body{margin:0}}</style></head><body>",
        f"<h1>Transit report {escape(mrn)}</h1><table>",
        *[f"<tr><th>{escape(k)}</th><td>{cell(v)}</td></tr>" for k, v in facts],
        "</table><h2>Timeline</h2><table><tr><th>Time</th><th>Event</th><th>By</th>",
        "<th>Details</th></tr>",
        *[
            f"<tr><td>{cell(e['at'])}</td><td>{cell(e['kind'])}</td><td>{cell(e['actor'])}</td>"
            f"<td>{escape(json.dumps(e['details'], default=str))}</td></tr>"
            for e in events
        ],
        "</table><h2>Alerts</h2><table><tr><th>Time</th><th>Type</th><th>Severity</th>",
        "<th>Status</th><th>Note</th></tr>",
        *[
            f"<tr><td>{cell(a['event_time'])}</td><td>{cell(a['type'])}</td>"
            f"<td>{cell(a['severity'])}</td><td>{cell(a['status'])}</td><td>{cell(a['note'])}</td></tr>"
            for a in alerts
        ],
        f"</table><p>Printed {escape(datetime.now(UTC).isoformat(timespec='seconds'))}",
        f" by {escape(who.actor)}. Signature: ____________________</p></body></html>",
    ]
    return HTMLResponse("".join(html))
