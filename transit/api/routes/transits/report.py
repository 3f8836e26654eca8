"""A one-page transit report to print: the declaration, the timeline, the alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from transit.api.deps import Db, iso
from transit.api.errors import answering
from transit.api.routes.transit_schemas import MrnPath
from transit.api.routes.transits.queries import view
from transit.api.routes.transits.tracks import all_fixes
from transit.api.security import Caller
from transit.db import alerts, transits
from transit.services.transits import visible

router = APIRouter()

_STYLE = (
    "body{font:12px/1.4 sans-serif;margin:16mm}h1{font-size:18px}table{border-collapse:"
    "collapse;width:100%;margin-bottom:10px}td,th{border:1px solid #999;padding:2px 4px;"
    "text-align:left;vertical-align:top}th{background:#eee}@page{size:A4;margin:12mm}"
    "@media print{body{margin:0}}"
)


def _cell(v: Any) -> str:
    return escape(str(iso(v)) if v is not None else "")


@router.get("/transits/{mrn}/report", response_class=HTMLResponse)
def report(db: Db, who: Caller, mrn: Annotated[str, MrnPath]) -> HTMLResponse:
    """A one-page transit report an officer can print."""
    with answering(db):
        tr = visible(db, who, mrn)
    info = view(db, who, mrn)
    events = transits.events(db, mrn)
    raised = alerts.of_transit(db, mrn)
    fixes = all_fixes(db, tr)
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
        ("Fixes", len(fixes)),
    ]
    html = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Transit {escape(mrn)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Transit report {escape(mrn)}</h1><table>",
        *[f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts],
        "</table><h2>Timeline</h2><table><tr><th>Time</th><th>Event</th><th>By</th>",
        "<th>Details</th></tr>",
        *[
            f"<tr><td>{_cell(e['at'])}</td><td>{_cell(e['kind'])}</td><td>{_cell(e['actor'])}</td>"
            f"<td>{escape(json.dumps(e['details'], default=str))}</td></tr>"
            for e in events
        ],
        "</table><h2>Alerts</h2><table><tr><th>Time</th><th>Type</th><th>Severity</th>",
        "<th>Status</th><th>Note</th></tr>",
        *[
            f"<tr><td>{_cell(a['event_time'])}</td><td>{_cell(a['type'])}</td>"
            f"<td>{_cell(a['severity'])}</td><td>{_cell(a['status'])}</td>"
            f"<td>{_cell(a['note'])}</td></tr>"
            for a in raised
        ],
        f"</table><p>Printed {escape(datetime.now(UTC).isoformat(timespec='seconds'))}",
        f" by {escape(who.actor)}. Signature: ____________________</p></body></html>",
    ]
    return HTMLResponse("".join(html))
