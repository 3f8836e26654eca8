"""Alerts: newest first, with filters; acknowledge, assign, resolve with a note."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from transit.api.deps import Db, as_json
from transit.api.errors import answering
from transit.api.security import Caller
from transit.db import alerts
from transit.db.visibility import Visibility
from transit.keys import Principal
from transit.model import AlertType, Severity
from transit.services.alerts import act

router = APIRouter(tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=2**62)]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(min_length=1, max_length=120)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000, description="What was found and done")


@router.get("/alerts")
def list_alerts(
    db: Db,
    who: Caller,
    mrn: Annotated[str | None, Query(min_length=18, max_length=18)] = None,
    type: AlertType | None = None,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Severity | None = None,
    live: Annotated[bool | None, Query(description="only alerts whose condition holds")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Alerts, newest first, filtered by MRN, type, status and severity; an officer's
    are those of transits through their office."""
    rows = alerts.search(db, Visibility.of(who), mrn, type, status, severity, live, limit)
    items = [as_json(r) for r in rows]
    return {"count": len(items), "items": items}


def _answer(
    db: Db, who: Principal, alert_id: int, action: alerts.Action, **values: str
) -> dict[str, Any]:
    """Work the alert, commit, and answer with it."""
    with answering(db):
        alert = act(db, who, alert_id, action, **values)
    db.commit()
    return as_json(alert)


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(db: Db, who: Caller, alert_id: AlertId) -> dict[str, Any]:
    """Acknowledge an alert: someone is on it."""
    return _answer(db, who, alert_id, "acknowledge")


@router.post("/alerts/{alert_id}/assign")
def assign(db: Db, who: Caller, alert_id: AlertId, body: AssignIn) -> dict[str, Any]:
    """Assign an alert to someone."""
    return _answer(db, who, alert_id, "assign", assignee=body.assignee)


@router.post("/alerts/{alert_id}/resolve")
def resolve(db: Db, who: Caller, alert_id: AlertId, body: ResolveIn) -> dict[str, Any]:
    """Resolve an alert with a note; it stays in the history."""
    return _answer(db, who, alert_id, "resolve", note=body.note)
