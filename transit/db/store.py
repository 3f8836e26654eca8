"""Ingest's unit of work: one batch written in one transaction (telemetry, the
devices heard, dead letters, alerts) and the lifecycle changes ingest found; the
values ingest passes. Each table's SQL is its own repository's (:mod:`transit.db`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from transit.db import alerts as alert_rows
from transit.db import dead_letters as dead_letter_rows
from transit.db import devices, telemetry
from transit.model import AlertEvent, Fix, SealEvent

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class DeadLetter:
    """A message refused at the boundary, kept with its raw bytes for inspection."""

    source: str
    topic: str | None
    raw: bytes
    reason: str
    detail: str
    sig: str | None = None  # the message's HMAC user property, kept to verify a replay


@dataclass(frozen=True)
class ActiveTransit:
    """What ingest needs to know of a transit in progress."""

    mrn: str
    tracker_id: str
    corridor_id: str
    seal_ids: tuple[str, ...]
    countries: tuple[str, ...] = ()
    offices: tuple[str, ...] = ()  # departure, transit and destination
    time_limit: datetime | None = None
    # the corridor's thresholds with the transit's own over them
    thresholds: dict[str, float] = field(default_factory=dict)
    status: str = "in_transit"


def prepare_session(conn: Conn) -> None:
    """Create the session's staging tables (once per connection)."""
    create_staging(conn)
    conn.commit()


def create_staging(conn: Conn) -> None:
    """Create the staging tables if this session has none, in the caller's transaction."""
    telemetry.create_staging(conn)


def write_batch(
    conn: Conn,
    fixes: list[Fix],
    seal_events: list[SealEvent],
    dead_letters: list[DeadLetter],
    alerts: list[AlertEvent],
) -> tuple[int, list[int]]:
    """Write one batch in one transaction. Returns (new fix rows, ids of new alerts).

    Rows go through binary COPY into a staging table, then into the hypertables with
    ``ON CONFLICT DO NOTHING``: a redelivered message writes nothing twice.
    """
    with conn.transaction():
        inserted = telemetry.write_fixes(conn, fixes) if fixes else 0
        if seal_events:
            telemetry.write_seal_events(conn, seal_events)
        senders = sorted({f.device_id for f in fixes} | {e.device_id for e in seal_events})
        if senders:
            devices.heard(conn, senders)
        if dead_letters:
            dead_letter_rows.insert(conn, dead_letters)
        new_alert_ids = alert_rows.record(conn, alerts)
    return inserted, new_alert_ids


@dataclass(frozen=True)
class LifecycleEvent:
    """A change of a transit's state that ingest found: depart, cross, arrive, overdue."""

    mrn: str
    action: str
    time: datetime
    details: dict[str, Any] = field(default_factory=dict)


_LIFECYCLE = {
    # action: (states it may start from, state it leads to, timestamp column)
    "depart": (["released"], "in_transit", None),
    "arrive": (["released", "in_transit", "overdue"], "arrived", "arrived_at"),
    "overdue": (["released", "in_transit"], "overdue", None),
    "cross": (["released", "in_transit", "overdue"], None, None),
}


def apply_lifecycle(conn: Conn, events: list[LifecycleEvent]) -> int:
    """Record what ingest found, in the batch's transaction: the state change (only from
    a state that allows it), the transit's timeline, the audit trail, and for a border
    crossing a notice to the country entered. Returns the changes applied."""
    from transit import audit, webhooks
    from transit.db import transits  # which imports this module's ActiveTransit

    applied = 0
    for e in events:
        sources, target, column = _LIFECYCLE[e.action]
        if transits.advance(conn, e.mrn, sources, target, column, e.time) is None:
            continue
        kind = {"depart": "departed", "arrive": "arrived", "cross": "crossed"}.get(
            e.action, e.action
        )
        details = {"event_time": e.time.isoformat(), **e.details}
        if e.action == "overdue":
            details["enquiry"] = "opened"
        transits.add_event(conn, e.mrn, kind, "ingest", details)
        audit.append(conn, "ingest", f"transit.{kind}", e.mrn, details)
        if e.action == "cross" and e.details.get("to"):
            webhooks.enqueue(conn, "crossing", e.mrn, [e.details["to"]], {"mrn": e.mrn, **details})
        applied += 1
    return applied
