"""Reading transits: the list, one transit with its last position and open alerts,
its timeline. A partner sees the transits through its country, without the private
fields; an officer those through their office."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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


RISK_COLUMNS = ("risk_probability", "risk_level", "risk_reasons", "risk_updated_at")


def public(row: dict[str, Any], vis: Visibility) -> dict[str, Any]:
    """A row of :func:`transit.db.transits.view` as the caller may see it; ``risk`` is
    its score (None: not scored yet): probability, level (low, medium, high), the
    reasons (each feature's value, weight and contribution to the logit) and when it
    was last updated."""
    fix = {k[4:]: iso(row.pop(k)) for k in ("fix_time", "fix_lat", "fix_lon", "fix_speed_kmh")}
    risk = {k[5:]: row.pop(k, None) for k in RISK_COLUMNS}
    details = row.pop("details", None) or {}
    out = as_json(row)
    out["last_fix"] = fix if fix["time"] is not None else None
    out["risk"] = as_json(risk) if risk["level"] is not None else None
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
    sort: Annotated[
        Literal["-declared_at", "declared_at", "-risk", "risk"],
        Query(description="The order: by declaration or by risk score; '-' for descending"),
    ] = "-declared_at",
    risk_level: Annotated[
        Literal["low", "medium", "high"] | None,
        Query(description="Only transits whose risk score is of this level"),
    ] = None,
    finished: Annotated[
        bool | None,
        Query(description="Only finished transits (closed or cancelled), or only open ones"),
    ] = None,
) -> dict[str, Any]:
    """Transits the caller may see, newest first, or by risk (``sort=-risk``: the
    transits to inspect first); each with its risk score."""
    vis = Visibility.of(who)
    rows = transits.view_list(
        db, vis, status, country, limit, sort=sort, risk_level=risk_level, finished=finished
    )
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
