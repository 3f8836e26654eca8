"""Alerts: newest first, with filters; acknowledge, assign, resolve with a note."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from transit import audit
from transit.api.deps import Db, as_json
from transit.api.security import Caller
from transit.keys import Principal
from transit.model import AlertType, Severity

router = APIRouter(tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=2**62)]
COLUMNS = (
    "a.id, a.mrn, a.device_id, a.type, a.cond_key, a.severity, a.status, a.event_time,"
    " a.raised_at, a.lat, a.lon, a.details, a.cleared_at, a.acknowledged_at,"
    " a.acknowledged_by, a.assignee, a.resolved_at, a.resolved_by, a.note"
)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(min_length=1, max_length=120)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000, description="What was found and done")


def _scope(who: Principal) -> tuple[str | None, str | None]:
    """An officer sees the alerts of transits through their office."""
    return (who.office, who.office) if who.role == "officer" else (None, None)


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
    """Alerts, newest first, filtered by MRN, type, status and severity."""
    office, _ = _scope(who)
    rows = db.execute(
        f"SELECT {COLUMNS} FROM alerts a LEFT JOIN transits t ON t.mrn = a.mrn"
        " WHERE (%s::text IS NULL OR a.mrn = %s) AND (%s::text IS NULL OR a.type = %s)"
        " AND (%s::text IS NULL OR a.status = %s) AND (%s::text IS NULL OR a.severity = %s)"
        " AND (%s::bool IS NULL OR (a.cleared_at IS NULL) = %s)"
        " AND (%s::text IS NULL OR t.office_departure = %s OR t.office_destination = %s"
        "      OR %s = ANY(t.offices_transit))"
        " ORDER BY a.raised_at DESC, a.id DESC LIMIT %s",
        [mrn, mrn, type, type, status, status, severity, severity, live, live]
        + [office] * 4
        + [limit],
    ).fetchall()
    items = [as_json(r) for r in rows]
    return {"count": len(items), "items": items}


def _act(
    db: Db,
    who: Principal,
    alert_id: int,
    sql: str,
    params: tuple[Any, ...],
    what: str,
    details: dict[str, Any],
) -> dict[str, Any]:
    office, _ = _scope(who)
    row = db.execute(
        "SELECT a.id, a.status FROM alerts a LEFT JOIN transits t ON t.mrn = a.mrn"
        " WHERE a.id = %s AND (%s::text IS NULL OR t.office_departure = %s"
        " OR t.office_destination = %s OR %s = ANY(t.offices_transit)) FOR UPDATE OF a",
        (alert_id, office, office, office, office),
    ).fetchone()
    if row is None:
        raise HTTPException(404, detail=f"no alert {alert_id}")
    if row["status"] == "resolved":
        db.rollback()
        raise HTTPException(409, detail={"refused": [f"alert {alert_id} is resolved already"]})
    db.execute(sql, (*params, alert_id))
    audit.append(db, who.actor, f"alert.{what}", f"alert:{alert_id}", details)
    out = db.execute(f"SELECT {COLUMNS} FROM alerts a WHERE a.id = %s", (alert_id,)).fetchone()
    db.commit()
    return as_json(out) if out else {}


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(db: Db, who: Caller, alert_id: AlertId) -> dict[str, Any]:
    """Acknowledge an alert: someone is on it."""
    return _act(
        db,
        who,
        alert_id,
        "UPDATE alerts SET status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at,"
        " now()), acknowledged_by = coalesce(acknowledged_by, %s) WHERE id = %s",
        (who.actor,),
        "acknowledge",
        {},
    )


@router.post("/alerts/{alert_id}/assign")
def assign(db: Db, who: Caller, alert_id: AlertId, body: AssignIn) -> dict[str, Any]:
    """Assign an alert to someone."""
    return _act(
        db,
        who,
        alert_id,
        "UPDATE alerts SET assignee = %s WHERE id = %s",
        (body.assignee,),
        "assign",
        {"assignee": body.assignee},
    )


@router.post("/alerts/{alert_id}/resolve")
def resolve(db: Db, who: Caller, alert_id: AlertId, body: ResolveIn) -> dict[str, Any]:
    """Resolve an alert with a note; it stays in the history."""
    return _act(
        db,
        who,
        alert_id,
        "UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = %s,"
        " note = %s, acknowledged_at = coalesce(acknowledged_at, now()),"
        " acknowledged_by = coalesce(acknowledged_by, %s) WHERE id = %s",
        (who.actor, body.note, who.actor),
        "resolve",
        {"note": body.note},
    )
