"""What an office does to a transit: declare it, release it after the departure checks,
close it at the exit border, cancel it, record an incident; and find a transit the
caller may see.

Officers act for their own office (declare, release and cancel at the office of
departure; close at the office of destination or exit). The state machine is
:mod:`transit.lifecycle`; every change goes into the transit's timeline and the audit
log, in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from transit import audit, lifecycle, webhooks
from transit.api.routes.transit_schemas import InspectionIn, TransitIn
from transit.db import alerts, devices, offices, risk, seals, telemetry, transits
from transit.db.query import Conn
from transit.db.visibility import PRIVATE_FIELDS, Visibility
from transit.keys import Principal
from transit.lifecycle import Action, CloseFacts, ReleaseFacts, SealFact, State
from transit.services import declaration
from transit.services.errors import Forbidden, Invalid, NotFound

TRACKER_FRESH_S = 600  # release needs a tracker report this recent


def visible(conn: Conn, who: Principal, mrn: str, lock: bool = False) -> dict[str, Any]:
    """The transit's row if the caller may see it (locked with ``lock``).

    Raises:
        NotFound: there is none, or the caller may not see it (nothing leaks)."""
    row = transits.get(conn, mrn, Visibility.of(who), lock)
    if row is None:
        raise NotFound(f"no transit with MRN {mrn}")
    return row


def _require_office(who: Principal, office: str, what: str) -> None:
    if who.role == "officer" and who.office != office:
        raise Forbidden(
            f"only an officer of {office} may {what} (this key is bound to {who.office})"
        )


def record(conn: Conn, mrn: str, kind: str, who: Principal, details: dict[str, Any]) -> None:
    """Put an event on the transit's timeline and in the audit log."""
    transits.add_event(conn, mrn, kind, who.actor, details)
    audit.append(conn, who.actor, f"transit.{kind}", mrn, details)


def declare(conn: Conn, who: Principal, body: TransitIn, now: datetime) -> None:
    """Declare a transit (NCTS IE015). An officer declares at their own office.

    Raises:
        Forbidden: an officer of another office.
        Invalid: every problem of the declaration, or its tracker or MRN taken."""
    _require_office(who, body.office_departure, "declare a transit departing from it")
    declaration.check(conn, body, now)
    if devices.kind(conn, body.tracker_id) != "tracker":
        raise Invalid.field("tracker_id", f"{body.tracker_id} is not a registered tracker")
    if len(set(body.seal_ids)) != len(body.seal_ids):
        raise Invalid.field("seal_ids", "a seal is declared twice")
    busy = transits.tracker_busy(conn, body.tracker_id, sorted(lifecycle.OPEN))
    if busy:
        raise Invalid.field("tracker_id", f"{body.tracker_id} is on transit {busy}")
    details: dict[str, Any] = {
        "driver": body.driver.model_dump() if body.driver else None,
        "guarantee": body.guarantee.model_dump() if body.guarantee else None,
    }
    if body.thresholds:
        details["thresholds"] = body.thresholds
    if body.trader:
        details["trader"] = body.trader
    declared = body.model_dump(exclude=set(PRIVATE_FIELDS))  # those go in the details
    if not transits.declare(conn, **declared, details=details, replace=False):
        raise Invalid.field("mrn", f"a transit with MRN {body.mrn} exists already")
    record(conn, body.mrn, "declared", who, {"office": body.office_departure})


def _seal_facts(conn: Conn, row: dict[str, Any]) -> list[SealFact]:
    last = telemetry.seal_statuses(conn, row["tracker_id"], row["seal_ids"], row["declared_at"])
    return [
        SealFact(seal, status is not None, status, status == "sealed")
        for seal, status in last.items()
    ]


def release(conn: Conn, who: Principal, mrn: str) -> None:
    """Release for transit (IE029) after the departure checks (the tracker reporting,
    every seal armed); partners on the itinerary get an anticipated-arrival notice.

    Raises:
        NotFound, Forbidden, Refused: with every reason the checks give."""
    row = visible(conn, who, mrn, lock=True)
    _require_office(who, row["office_departure"], "release it")
    fresh = devices.heard_within(conn, row["tracker_id"], TRACKER_FRESH_S)
    target = lifecycle.release(State(row["status"]), ReleaseFacts(fresh, _seal_facts(conn, row)))
    transits.set_state(conn, mrn, target.value, "released_at")
    seals.arm(conn, row["seal_ids"], row["tracker_id"])
    record(conn, mrn, "released", who, {"office": row["office_departure"]})
    notice = {
        "event": "anticipated_arrival",
        "mrn": mrn,
        "vehicle": row["vehicle"],
        "seal_ids": row["seal_ids"],
        "corridor_id": row["corridor_id"],
        "office_departure": row["office_departure"],
        "offices_transit": row["offices_transit"],
        "office_destination": row["office_destination"],
        "countries": row["countries"],
        "time_limit": row["time_limit"].isoformat(),
    }
    webhooks.enqueue(conn, "anticipated_arrival", mrn, list(row["countries"]), notice)


def close(
    conn: Conn,
    who: Principal,
    mrn: str,
    finding: str | None,
    incident_code: int | None,
    inspection: InspectionIn | None = None,
) -> None:
    """Close at the office of destination or exit: the truck inside that office's
    geofence, every declared seal reporting sealed, no seal alert open; otherwise
    refused with the reasons, unless the officer records a finding: then it closes
    with an incident. The seals are disarmed. An ``inspection`` is kept with the risk
    score the officer saw (an inspection that found something is a finding, its note
    the finding unless one is given), on the timeline and in the audit log.

    Raises:
        NotFound, Forbidden, Refused."""
    row = visible(conn, who, mrn, lock=True)
    destination = row["office_destination"]
    _require_office(who, destination, "close it")
    if inspection is not None and inspection.found and not finding:
        finding = inspection.note
    office = offices.get(conn, destination)
    last = telemetry.last_position(conn, row["tracker_id"], row["declared_at"])
    facts = CloseFacts(
        officer_office=who.office if who.role == "officer" else None,
        destination=destination,
        inside_office=bool(office and last and office.contains(*last)),
        seals=_seal_facts(conn, row),
        open_seal_alerts=alerts.count_open(conn, mrn, "seal_"),
        finding=finding,
    )
    state = State(row["status"])
    arrived = lifecycle.arrival_at_closing(state, facts)
    if arrived is not state:
        state = arrived
        transits.set_state(conn, mrn, None, "arrived_at")
        record(conn, mrn, "arrived", who, {"office": destination})
    target, problems = lifecycle.close(state, facts)
    if problems:
        code = incident_code or (2 if any("seal" in p for p in problems) else 6)
        record(
            conn,
            mrn,
            "incident",
            who,
            {
                "code": code,
                "code_text": lifecycle.incident_code(code),
                "description": finding,
                "checks_failed": problems,
            },
        )
    if inspection is not None:
        _inspected(conn, who, mrn, destination, inspection)
    transits.set_state(conn, mrn, target.value, "closed_at")
    seals.disarm(conn, row["seal_ids"])
    record(
        conn,
        mrn,
        "closed",
        who,
        {
            "office": destination,
            "decision": "closed with incident" if problems else "closed",
            "checks_failed": problems,
            "seals_disarmed": row["seal_ids"],
        },
    )


def _inspected(conn: Conn, who: Principal, mrn: str, office: str, inspection: InspectionIn) -> None:
    """Keep what an inspection found with the score the officer saw when deciding."""
    seen = risk.current(conn, mrn)
    probability = float(seen["probability"]) if seen else None
    level = str(seen["level"]) if seen else None
    details: dict[str, Any] = {
        "inspected": inspection.inspected,
        "found": inspection.found,
        "note": inspection.note,
        "office": office,
        "risk_level": level,
        "risk_probability": probability,
    }
    risk.inspect(
        conn,
        mrn,
        inspected=inspection.inspected,
        found=inspection.found,
        note=inspection.note,
        office=office,
        actor=who.actor,
        probability=probability,
        level=level,
    )
    record(conn, mrn, "inspected", who, details)


def cancel(conn: Conn, who: Principal, mrn: str, reason: str) -> None:
    """Cancel a declaration before the truck leaves the office of departure.

    Raises:
        NotFound, Forbidden, Refused."""
    row = visible(conn, who, mrn, lock=True)
    _require_office(who, row["office_departure"], "cancel it")
    target = lifecycle.transition(State(row["status"]), Action.CANCEL)
    transits.set_state(conn, mrn, target.value, "closed_at")
    record(conn, mrn, "cancelled", who, {"reason": reason})


def record_incident(
    conn: Conn, who: Principal, mrn: str, incident: dict[str, Any]
) -> dict[str, Any]:
    """Record an incident (NCTS CL019 codes 1 to 6, ``incident["code"]``) against a
    transit under way; the incident as recorded.

    Raises:
        NotFound, Refused."""
    row = visible(conn, who, mrn, lock=True)
    lifecycle.transition(State(row["status"]), Action.INCIDENT)
    details = incident | {"code_text": lifecycle.incident_code(incident["code"])}
    record(conn, mrn, "incident", who, details)
    return details
