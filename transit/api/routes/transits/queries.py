"""Reading transits: the list, one transit with its last position and open alerts,
its timeline. A partner sees the transits through its country, without the private
fields; an officer those through their office."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from transit.api.deps import Db, as_json, iso
from transit.api.errors import answering
from transit.api.routes.transit_schemas import MrnPath
from transit.api.security import Caller
from transit.db import transits
from transit.db.visibility import Visibility
from transit.keys import Principal
from transit.lifecycle import State
from transit.services.transits import visible

router = APIRouter()


def public(row: dict[str, Any], vis: Visibility) -> dict[str, Any]:
    """A row of :func:`transit.db.transits.view` as the caller may see it."""
    fix = {k[4:]: iso(row.pop(k)) for k in ("fix_time", "fix_lat", "fix_lon", "fix_speed_kmh")}
    details = row.pop("details", None) or {}
    out = as_json(row)
    out["last_fix"] = fix if fix["time"] is not None else None
    return vis.redact(out, details)


def view(db: Db, who: Principal, mrn: str) -> dict[str, Any]:
    """One transit as the caller may see it (404 when it may not)."""
    vis = Visibility.of(who)
    row = transits.view(db, mrn, vis)
    if row is None:
        raise HTTPException(404, detail=f"no transit with MRN {mrn}")
    return public(row, vis)


@router.get("/transits")
def list_transits(
    db: Db,
    who: Caller,
    status: State | None = None,
    country: Annotated[str | None, Query(pattern="^[A-Z]{2}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Transits the caller may see, newest first."""
    vis = Visibility.of(who)
    rows = transits.view_list(db, vis, status, country, limit)
    items = [public(r, vis) for r in rows]
    return {"count": len(items), "items": items}


@router.get("/transits/{mrn}")
def get_transit(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """A transit: its declaration, status, last position and open alerts."""
    return view(db, who, mrn)


@router.get("/transits/{mrn}/events")
def transit_events(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """The transit's timeline: state changes, crossings, incidents, closure."""
    with answering(db):
        visible(db, who, mrn)
    return {"mrn": mrn, "items": [as_json(r) for r in transits.events(db, mrn)]}
