"""Fixes the ingest filters kept apart, for inspection: a transit's (received while it
was under way) or a device's, newest first, with the count of each reason."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from transit.api.deps import Db, as_json
from transit.api.errors import answering
from transit.api.routes.transit_schemas import MrnPath
from transit.api.routes.transits.tracks import until
from transit.api.security import Caller
from transit.db import devices
from transit.db.filtered import list_filtered
from transit.services.transits import visible

router = APIRouter(tags=["filtered fixes"])

Reason = Literal["out_of_range", "null_island", "future", "poor_accuracy", "stale", "jump"]
ReasonQuery = Query(description="only this reason (docs/protocol.md lists them)")
LimitQuery = Query(ge=1, le=10_000, description="at most this many fixes, newest first")


@router.get("/transits/{mrn}/filtered-fixes")
def transit_filtered_fixes(
    db: Db,
    who: Caller,
    mrn: Annotated[str, MrnPath],
    reason: Annotated[Reason | None, ReasonQuery] = None,
    limit: Annotated[int, LimitQuery] = 1000,
) -> dict[str, Any]:
    """The tracker's fixes kept apart by the filters (never drawn on the track, never
    given to the rules) that arrived from the declaration until the transit closed."""
    with answering(db):
        tr = visible(db, who, mrn)
    found = list_filtered(db, tr["tracker_id"], tr["declared_at"], until(tr), reason, limit)
    return {
        "mrn": mrn,
        "device_id": tr["tracker_id"],
        "counts": found["counts"],
        "fixes": [as_json(r) for r in found["fixes"]],
    }


@router.get("/devices/{device_id}/filtered-fixes")
def device_filtered_fixes(
    db: Db,
    who: Caller,
    device_id: Annotated[str, Path(min_length=1, max_length=64, description="The device id")],
    reason: Annotated[Reason | None, ReasonQuery] = None,
    limit: Annotated[int, LimitQuery] = 1000,
) -> dict[str, Any]:
    """A device's fixes kept apart by the filters, whenever they arrived."""
    if not devices.exists(db, device_id):
        raise HTTPException(404, detail=f"no device {device_id}")
    found = list_filtered(db, device_id, None, None, reason, limit)
    return {
        "device_id": device_id,
        "counts": found["counts"],
        "fixes": [as_json(r) for r in found["fixes"]],
    }
