"""What an office does to a transit over HTTP: declare, release, close, cancel, record
an incident. Each route parses, calls :mod:`transit.services.transits`, commits the
request's transaction and answers with the transit as the caller sees it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter

from transit.api.deps import Db
from transit.api.errors import answering
from transit.api.routes.transit_schemas import CancelIn, CloseIn, IncidentIn, MrnPath, TransitIn
from transit.api.routes.transits.queries import view
from transit.api.security import Caller
from transit.services import transits

router = APIRouter()


@router.post("/transits", status_code=201)
def declare(db: Db, who: Caller, body: TransitIn) -> dict[str, Any]:
    """Declare a transit (NCTS IE015). An officer declares at their own office."""
    with answering(db):
        transits.declare(db, who, body, datetime.now(UTC))
    db.commit()
    return view(db, who, body.mrn)


@router.post("/transits/{mrn}/release")
def release(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> dict[str, Any]:
    """Release for transit (IE029) after the departure checks; partners on the itinerary
    get an anticipated-arrival notice."""
    with answering(db):
        transits.release(db, who, mrn)
    db.commit()
    return view(db, who, mrn)


@router.post("/transits/{mrn}/close")
def close(db: Db, who: Caller, mrn: Annotated[str, MrnPath], body: CloseIn) -> dict[str, Any]:
    """Close at the office of destination or exit: the truck inside that office's
    geofence, every declared seal reporting sealed, no seal alert open. Otherwise 409
    with the reasons, unless the officer records a finding: then it closes with an
    incident. The seals are disarmed. The officer sees the transit's risk score first
    (``GET /transits/{mrn}``: level and reasons) and records whether an inspection
    found anything (``inspection``)."""
    with answering(db):
        transits.close(db, who, mrn, body.finding, body.incident_code, body.inspection)
    db.commit()
    return view(db, who, mrn)


@router.post("/transits/{mrn}/cancel")
def cancel(db: Db, who: Caller, mrn: Annotated[str, MrnPath], body: CancelIn) -> dict[str, Any]:
    """Cancel a declaration before the truck leaves the office of departure."""
    with answering(db):
        transits.cancel(db, who, mrn, body.reason)
    db.commit()
    return view(db, who, mrn)


@router.post("/transits/{mrn}/incidents", status_code=201)
def record_incident(
    db: Db, who: Caller, mrn: Annotated[str, MrnPath], body: IncidentIn
) -> dict[str, Any]:
    """Record an incident (NCTS CL019 codes 1 to 6) against a transit under way."""
    with answering(db):
        incident = transits.record_incident(db, who, mrn, body.model_dump())
    db.commit()
    return {"mrn": mrn, "incident": incident}
