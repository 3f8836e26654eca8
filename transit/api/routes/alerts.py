"""Alerts, newest first, with filters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from transit.api.deps import Db
from transit.model import AlertType

router = APIRouter(tags=["alerts"])


@router.get("/alerts")
def list_alerts(
    db: Db,
    mrn: Annotated[str | None, Query(min_length=18, max_length=18)] = None,
    type: AlertType | None = None,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Alerts, newest first, filtered by MRN, type and status."""
    rows = db.execute(
        "SELECT id, mrn, device_id, type, severity, status, event_time, raised_at, lat, lon,"
        " details, cleared_at FROM alerts"
        " WHERE (%s::text IS NULL OR mrn = %s) AND (%s::text IS NULL OR type = %s)"
        " AND (%s::text IS NULL OR status = %s)"
        " ORDER BY raised_at DESC, id DESC LIMIT %s",
        (mrn, mrn, type, type, status, status, limit),
    ).fetchall()
    items = [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows
    ]
    return {"count": len(items), "items": items}
