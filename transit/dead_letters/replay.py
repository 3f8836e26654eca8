"""Replay a dead letter: the kept message goes through ingest again, once its cause
is fixed (the device registered since, its key rotated, the firmware's bug forgiven).

Nothing is republished to the broker: the kept topic, payload and signature go through
the same transaction as a worker's batch (``transit.ingest.transaction.ingest``, with
the devices, corridors and transits as the database has them now): a message of a
transit under way takes its place in its device's seq order, on the transit's stored
rule state (one that fills a gap lets the messages held behind it go on; one from a
gap passed over is evaluated late). Writes are idempotent on ``(device_id, seq)``, so
replaying twice stores nothing twice. A message refused again stays a dead letter,
with the new reason (the first one is kept in ``first_reason``). Every replay is
audited. The replay runs in the caller's transaction (the request or the command
commits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from transit import audit
from transit.bootstrap import country_borders
from transit.db import dead_letters, devices, store, telemetry
from transit.ingest import transaction
from transit.ingest.pipeline import Decoded, Pipeline, RawMessage
from transit.ingest.storage import load_pipeline

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


class NotReplayable(Exception):
    """A dead letter that cannot go through ingest (it kept no MQTT topic)."""


@dataclass(frozen=True)
class Replay:
    """What one replay did: ``accepted`` (with the telemetry rows it wrote, 0 when
    they were stored already) or ``refused`` (with the reason, as ingest gives it)."""

    letter_id: int
    outcome: str
    rows_written: int = 0
    reason: str | None = None
    detail: str | None = None
    alert_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The replay as the API and the CLI report it."""
        return {
            "id": self.letter_id,
            "outcome": self.outcome,
            "rows_written": self.rows_written,
            "reason": self.reason,
            "detail": self.detail,
            "alert_ids": self.alert_ids,
        }


def replay(conn: Conn, letter_id: int, actor: str, now: datetime, rules: Pipeline) -> Replay:
    """Run dead letter ``letter_id`` through ingest as of ``now``; record and audit it.

    Raises LookupError when there is no such letter, NotReplayable when it kept no
    topic. Concurrent replays of one letter wait for each other (the row is locked)."""
    # The ingest store reads rows as tuples; the API's connections give dicts.
    factory = conn.row_factory
    conn.row_factory = tuple_row
    try:
        return _replay(conn, letter_id, actor, now, rules)
    finally:
        conn.row_factory = factory


def _replay(conn: Conn, letter_id: int, actor: str, now: datetime, rules: Pipeline) -> Replay:
    letter = dead_letters.take(conn, letter_id)
    if letter is None:
        raise LookupError(f"no dead letter {letter_id}")
    if letter["topic"] is None:
        raise NotReplayable(f"dead letter {letter_id} kept no MQTT topic")
    pipeline = rules
    load_pipeline(conn, pipeline, country_borders())
    message = RawMessage(letter["topic"], bytes(letter["raw"]), letter["sig"])
    # Refused again: the kept row takes the new reason instead of a second row.
    refused = [d for d in pipeline.decode([message], now) if not isinstance(d, Decoded)]
    if refused:
        outcome = Replay(letter_id, "refused", 0, refused[0].reason, refused[0].detail)
    else:
        outcome = _write(conn, letter_id, pipeline, message, now)
    dead_letters.record_replay(
        conn, letter_id, now, outcome.outcome, outcome.reason, outcome.detail
    )
    audit.append(
        conn,
        actor,
        "dead_letter.replay",
        f"dead_letter:{letter_id}",
        {**outcome.as_json(), "previous_reason": letter["reason"]},
    )
    return outcome


def _write(
    conn: Conn, letter_id: int, pipeline: Pipeline, message: RawMessage, now: datetime
) -> Replay:
    """Write an accepted message as a worker would, counting the rows that are new."""
    decoded = [d for d in pipeline.decode([message], now) if isinstance(d, Decoded)]
    senders = sorted({d.device_id for d in decoded})
    seqs = sorted({d.seq for d in decoded if d.seq is not None})
    heard = devices.last_seen(conn, senders)
    store.create_staging(conn)
    before = telemetry.stored(conn, senders, seqs)
    alert_ids = transaction.ingest(conn, pipeline, [message], now, "replay", commit=False).alert_ids
    # Replaying an old message is not hearing from the device now: the silence
    # watchdog keeps the time it was last heard.
    for device in senders:
        devices.set_last_seen(conn, device, heard.get(device))
    written = telemetry.stored(conn, senders, seqs) - before
    return Replay(letter_id, "accepted", written, alert_ids=alert_ids)
