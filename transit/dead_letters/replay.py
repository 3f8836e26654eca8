"""Replay a dead letter: the kept message goes through ingest again, once its cause
is fixed (the device registered since, its key rotated, the firmware's bug forgiven).

Nothing is republished to the broker: the kept topic, payload and signature go through
the same pipeline as a worker's batch (``Pipeline.process`` with the devices, corridors
and transits as the database has them now) and the worker's own write path
(``write_result``). Writes are idempotent on ``(device_id, seq)``, so replaying twice
stores nothing twice. A message refused again stays a dead letter, with the new reason
(the first one is kept in ``first_reason``). Every replay is audited.

The replay runs in the caller's transaction (the request or the command commits). Its
rule state starts empty: a replayed fix is checked against the corridor and the rules
as one message on its own, not as part of the stream a worker holds in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from transit import audit
from transit.db import store
from transit.geofence import borders
from transit.ingest.pipeline import BatchResult, Pipeline, RawMessage
from transit.ingest.storage import load_pipeline, write_result

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


@lru_cache(maxsize=1)
def _country_borders() -> borders.Borders | None:
    """The country borders, read once per process (as a worker does)."""
    path = borders.default_path()
    return borders.load(path) if path.exists() else None


def replay(conn: Conn, letter_id: int, actor: str, now: datetime) -> Replay:
    """Run dead letter ``letter_id`` through ingest as of ``now``; record and audit it.

    Raises LookupError when there is no such letter, NotReplayable when it kept no
    topic. Concurrent replays of one letter wait for each other (the row is locked)."""
    # The ingest store reads rows as tuples; the API's connections give dicts.
    factory = conn.row_factory
    conn.row_factory = tuple_row
    try:
        return _replay(conn, letter_id, actor, now)
    finally:
        conn.row_factory = factory


def _replay(conn: Conn, letter_id: int, actor: str, now: datetime) -> Replay:
    with conn.cursor() as cur:
        row = cur.execute(
            "SELECT topic, raw, sig, reason FROM dead_letters WHERE id = %s FOR UPDATE",
            (letter_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no dead letter {letter_id}")
        topic, raw, sig, reason = row
        if topic is None:
            raise NotReplayable(f"dead letter {letter_id} kept no MQTT topic")
        pipeline = Pipeline()
        load_pipeline(cur.connection, pipeline, _country_borders())
        result = pipeline.process([RawMessage(topic, bytes(raw), sig)], now=now)
        # Refused again: the kept row takes the new reason instead of a second row.
        refused, result.dead_letters = result.dead_letters, []
        if refused:
            outcome = Replay(letter_id, "refused", 0, refused[0].reason, refused[0].detail)
        else:
            outcome = _write(cur, letter_id, result)
        cur.execute(
            "UPDATE dead_letters SET replays = replays + 1, replayed_at = %s,"
            " replay_outcome = %s, first_reason = coalesce(first_reason, reason),"
            " reason = coalesce(%s, reason), detail = coalesce(%s, detail) WHERE id = %s",
            (now, outcome.outcome, outcome.reason, outcome.detail, letter_id),
        )
    audit.append(
        conn,
        actor,
        "dead_letter.replay",
        f"dead_letter:{letter_id}",
        {**outcome.as_json(), "previous_reason": reason},
    )
    return outcome


def _write(cur: psycopg.Cursor[Any], letter_id: int, result: BatchResult) -> Replay:
    """Write an accepted message as a worker would, counting the rows that are new."""
    keyed = [(f.device_id, f.seq) for f in result.fixes] + [
        (e.device_id, e.seq) for e in result.seal_events
    ]
    devices = sorted({d for d, _ in keyed})
    seqs = sorted({s for _, s in keyed})
    heard = store.last_seen(cur.connection, devices)
    store.create_staging(cur.connection)
    before = _rows(cur, devices, seqs)
    _, alert_ids = write_result(cur.connection, result)
    # Replaying an old message is not hearing from the device now: the silence
    # watchdog keeps the time it was last heard.
    for device in devices:
        cur.execute(
            "UPDATE devices SET last_seen = %s WHERE device_id = %s", (heard.get(device), device)
        )
    written = _rows(cur, devices, seqs) - before
    return Replay(letter_id, "accepted", written, alert_ids=alert_ids)


def _rows(cur: psycopg.Cursor[Any], devices: list[str], seqs: list[int]) -> int:
    """Telemetry rows stored for these devices' messages (fixes and seal events)."""
    if not devices:
        return 0
    row = cur.execute(
        "SELECT (SELECT count(*) FROM fixes WHERE device_id = ANY(%s) AND seq = ANY(%s))"
        " + (SELECT count(*) FROM seal_events WHERE device_id = ANY(%s) AND seq = ANY(%s))",
        (devices, seqs, devices, seqs),
    ).fetchone()
    return int(row[0]) if row else 0
