"""Ingest's unit of work: one batch written in one transaction (telemetry, the
devices heard, dead letters, alerts) and the lifecycle changes ingest found, applied
through :mod:`transit.lifecycle`. Each table's SQL is its own repository's
(:mod:`transit.db`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from transit.db import alerts as alert_rows
from transit.db import dead_letters as dead_letter_rows
from transit.db import devices, messages, telemetry, transits
from transit.devices.payload import SignedMessage
from transit.ingest.types import DeadLetter
from transit.lifecycle import Action, LifecycleEvent, State, next_state
from transit.model import AlertEvent, Fix, SealEvent

Conn = psycopg.Connection[Any]


def prepare_session(conn: Conn) -> None:
    """Create the session's staging tables (once per connection)."""
    create_staging(conn)
    conn.commit()


def create_staging(conn: Conn) -> None:
    """Create the staging tables if this session has none, in the caller's transaction."""
    telemetry.create_staging(conn)
    messages.create_staging(conn)


def write_batch(
    conn: Conn,
    fixes: list[Fix],
    seal_events: list[SealEvent],
    dead_letters: list[DeadLetter],
    alerts: list[AlertEvent],
    signed: Sequence[SignedMessage] = (),
) -> tuple[int, list[int]]:
    """Write one batch in one transaction. Returns (new fix rows, ids of new alerts).

    Rows go through binary COPY into a staging table, then into the hypertables with
    ``ON CONFLICT DO NOTHING``: a redelivered message writes nothing twice. ``signed``
    are the batch's messages as signed, kept beside what they carried.
    """
    with conn.transaction():
        inserted = telemetry.write_fixes(conn, fixes) if fixes else 0
        if seal_events:
            telemetry.write_seal_events(conn, seal_events)
        if signed:
            messages.write_messages(conn, signed)
        senders = sorted({f.device_id for f in fixes} | {e.device_id for e in seal_events})
        if senders:
            devices.heard(conn, senders)
        if dead_letters:
            dead_letter_rows.insert(conn, dead_letters)
        new_alert_ids = alert_rows.record(conn, alerts)
    return inserted, new_alert_ids


# The column that records when a transit reached a state ingest moves it to.
_REACHED_AT: dict[State, transits.Stamp] = {State.ARRIVED: "arrived_at"}
# The timeline's word for what ingest found.
_KIND = {Action.DEPART: "departed", Action.ARRIVE: "arrived", Action.CROSS: "crossed"}


def apply_lifecycle(conn: Conn, events: list[LifecycleEvent]) -> int:
    """Record what ingest found, in the batch's transaction: the state change the
    lifecycle gives from the state the database holds (nothing where it refuses the
    action), the transit's timeline, the audit trail, and for a border crossing a
    notice to the country entered. Returns the changes applied."""
    from transit import audit, webhooks

    applied = 0
    for e in events:
        state = transits.lock_state(conn, e.mrn)
        target = next_state(State(state), e.action) if state else None
        if target is None:
            continue
        if target != state:
            transits.set_state(conn, e.mrn, target.value, _REACHED_AT.get(target), e.time)
        kind = _KIND.get(e.action, e.action.value)
        details = {"event_time": e.time.isoformat(), **e.details}
        if e.action is Action.OVERDUE:
            details["enquiry"] = "opened"
        transits.add_event(conn, e.mrn, kind, "ingest", details)
        audit.append(conn, "ingest", f"transit.{kind}", e.mrn, details)
        if e.action is Action.CROSS and e.details.get("to"):
            to = e.details["to"]
            notice = webhooks.crossing_notice(conn, e.mrn, to, details)
            webhooks.enqueue(conn, "crossing", e.mrn, [to], notice)
        applied += 1
    return applied
