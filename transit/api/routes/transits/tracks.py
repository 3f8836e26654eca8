"""A transit's track: GeoJSON (downsampled in the database when long), and every fix
as GPX 1.1 or CSV to download."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from transit.api.deps import Db
from transit.api.errors import answering
from transit.api.routes.transit_schemas import MrnPath
from transit.api.security import Caller
from transit.db import telemetry
from transit.db.query import Conn
from transit.lifecycle import FINISHED
from transit.services.transits import visible

router = APIRouter()


def until(tr: dict[str, Any]) -> datetime | None:
    """Where a transit's track ends: its closing, or now while it is not finished."""
    return tr["closed_at"] if tr["status"] in FINISHED else None


def all_fixes(db: Conn, tr: dict[str, Any]) -> list[dict[str, Any]]:
    """Every fix of the transit's tracker from its declaration to its end."""
    return telemetry.fixes(db, tr["tracker_id"], tr["declared_at"], until(tr))


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
    with answering(db):
        tr = visible(db, who, mrn)
    track = telemetry.track(
        db, tr["tracker_id"], start or tr["declared_at"], end or until(tr), points
    )
    coords = [[r["lon"], r["lat"]] for r in track.points]
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
                    "times": [r["time"].isoformat() for r in track.points],
                    "fixes": track.fixes,
                    "bucket_s": track.bucket_s,
                },
            }
        ],
    }


@router.get("/transits/{mrn}/track.gpx", response_class=Response)
def track_gpx(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> Response:
    """The whole track as GPX 1.1 (one track, one segment, every fix with its time)."""
    with answering(db):
        tr = visible(db, who, mrn)
    pts = "".join(
        f'<trkpt lat="{r["lat"]:.7f}" lon="{r["lon"]:.7f}"><time>'
        f"{r['time'].astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}</time></trkpt>"
        for r in all_fixes(db, tr)
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
    with answering(db):
        tr = visible(db, who, mrn)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "lat", "lon", "speed_kmh", "course_deg", "hdop"])
    for r in all_fixes(db, tr):
        w.writerow(
            [r["time"].isoformat(), r["lat"], r["lon"], r["speed_kmh"], r["course_deg"], r["hdop"]]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{mrn}.csv"'},
    )
