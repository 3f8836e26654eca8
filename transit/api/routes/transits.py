"""Transits and their tracks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from transit.api.deps import Db
from transit.model import MRN_RE

router = APIRouter(tags=["transits"])

MrnPath = Path(min_length=18, max_length=18, pattern=MRN_RE.pattern, description="The MRN")


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


@router.get("/transits/{mrn}")
def get_transit(db: Db, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """A transit: its declaration, status, last position and open alerts."""
    row = db.execute(
        "SELECT mrn, status, tracker_id, corridor_id, vehicle, seal_ids, office_departure,"
        " offices_transit, office_destination, countries, time_limit, declared_at,"
        " released_at, arrived_at, closed_at FROM transits WHERE mrn = %s",
        (mrn,),
    ).fetchone()
    if row is None:
        raise HTTPException(404, detail=f"no transit with MRN {mrn}")
    out = {k: _iso(v) for k, v in row.items()}
    last = db.execute(
        "SELECT time, lat, lon, speed_kmh FROM fixes WHERE device_id = %s"
        " AND time >= %s ORDER BY time DESC LIMIT 1",
        (row["tracker_id"], row["declared_at"]),
    ).fetchone()
    out["last_fix"] = {k: _iso(v) for k, v in last.items()} if last else None
    n = db.execute(
        "SELECT count(*) AS n FROM alerts WHERE mrn = %s AND status <> 'resolved'", (mrn,)
    ).fetchone()
    out["open_alerts"] = n["n"] if n else 0
    return out


@router.get("/transits/{mrn}/track")
def get_track(
    db: Db,
    mrn: Annotated[str, MrnPath],
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=100000)] = 5000,
) -> dict[str, Any]:
    """The transit's track as a GeoJSON FeatureCollection (a LineString with its times)."""
    tr = db.execute(
        "SELECT tracker_id, declared_at FROM transits WHERE mrn = %s", (mrn,)
    ).fetchone()
    if tr is None:
        raise HTTPException(404, detail=f"no transit with MRN {mrn}")
    rows = db.execute(
        "SELECT time, lon, lat FROM fixes WHERE device_id = %s AND time >= %s"
        " AND (%s::timestamptz IS NULL OR time >= %s) AND (%s::timestamptz IS NULL OR time <= %s)"
        " ORDER BY time LIMIT %s",
        (tr["tracker_id"], tr["declared_at"], start, start, end, end, limit),
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
                "properties": {"mrn": mrn, "device_id": tr["tracker_id"], "times": times},
            }
        ],
    }
