"""A batch's transaction: what ingest does between taking messages and acknowledging
them, the same in every worker on every machine, and for a replayed dead letter.

1. Decode, verify and validate every message (no state needed: before any lock).
2. Find the batch's devices that have a transit under way; lock those transits' rule
   state rows in MRN order (the serialisation point across workers), then read them
   with each transit's status as committed now, and the devices' held messages.
3. Per device, in seq order (:mod:`transit.ingest.sequencing`): evaluate what follows
   the cursor on the state read, hold what lies beyond a gap, store the rest plain.
4. Write fixes, alerts, lifecycle events, held messages and the state back, and
   update the risk scores of the transits evaluated (:mod:`transit.services.risk`), in
   the caller's transaction; the caller commits, then acknowledges.

The sweep (held messages past the gap timeout) and the watchdog (silence, overdue)
take rows with ``SKIP LOCKED``: a transit being evaluated right now is neither stalled
nor silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from transit.db import devices, filtered, rule_state, transits
from transit.ingest.pipeline import BatchResult, Decoded, Pipeline, RawMessage
from transit.ingest.sequencing import GAP_MAX_S, GAP_MIN_S, Cursor, Waiting, plan
from transit.ingest.storage import write_result
from transit.ingest.types import ActiveTransit, DeadLetter
from transit.lifecycle import UNDER_WAY, LifecycleEvent, State
from transit.rules.state import decode, encode
from transit.services import risk

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
Message = Decoded | rule_state.HeldMessage  # a held one is decoded again when its turn comes


@dataclass
class Written:
    """What one transaction wrote, and where its time went (milliseconds by phase)."""

    result: BatchResult = field(default_factory=BatchResult)
    rows: int = 0
    alert_ids: list[int] = field(default_factory=list)
    held: int = 0  # messages held beyond a gap
    released: int = 0  # held messages evaluated now
    duplicates: int = 0  # redelivered: acknowledged, nothing written
    transits: int = 0  # transits evaluated
    risk_errors: int = 0  # 1: the risk scores could not be updated (logged), the rest stands
    timings: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, since: float) -> float:
        """Add the time since ``since`` to phase ``name``; returns now."""
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + (now - since) * 1000
        return now


@dataclass
class _Work:
    """One transaction's messages, sorted out."""

    by_device: dict[str, list[Decoded]] = field(default_factory=dict)  # with a seq
    plain: list[Decoded] = field(default_factory=list)  # stored without rules
    again: list[Decoded] = field(default_factory=list)  # evaluated before: stored again
    dead: list[DeadLetter] = field(default_factory=list)


def ingest(
    conn: Conn,
    pipeline: Pipeline,
    messages: Sequence[RawMessage],
    now: datetime,
    worker: str,
    commit: bool = True,
) -> Written:
    """One batch, written in the caller's transaction (the module's steps). With
    ``commit``, a transit's rule state row made the first time is committed at once,
    before any row is locked (the caller has nothing else to commit yet)."""
    out = Written()
    t = time.perf_counter()
    work = _Work()
    for d in pipeline.decode(list(messages), now):
        if isinstance(d, DeadLetter):
            work.dead.append(d)
        elif d.seq is None:
            work.plain.append(d)  # a presence status: no seq, no rules
        else:
            work.by_device.setdefault(d.device_id, []).append(d)
    t = out.lap("decode", t)
    mrns = _take_over(conn, pipeline, sorted(work.by_device), commit)
    out.lap("discover", t)
    _evaluate(conn, pipeline, work, mrns, now, worker, out, skip_locked=False)
    return out


def sweep(conn: Conn, pipeline: Pipeline, now: datetime, worker: str) -> Written:
    """Evaluate what has waited beyond a gap that is known lost (see
    :mod:`transit.ingest.sequencing`), for the transits no other transaction holds; in
    the caller's transaction."""
    out = Written()
    waiting = rule_state.waiting_devices(conn, GAP_MIN_S, GAP_MAX_S)
    if not waiting:
        return out
    mrns = _take_over(conn, pipeline, waiting)
    work = _Work(by_device={dev: [] for dev in mrns})
    # A device no longer under way: what it held is stored without rules.
    gone = [dev for dev in waiting if dev not in mrns]
    if gone:
        orphans = [h for hs in rule_state.held(conn, gone).values() for h in hs]
        redone = _decode_held(conn, pipeline, orphans, now)
        work.plain += [d for d in redone if isinstance(d, Decoded)]
        work.dead += [d for d in redone if isinstance(d, DeadLetter)]
        rule_state.release(conn, [(h.device_id, h.seq) for h in orphans])
    _evaluate(conn, pipeline, work, mrns, now, worker, out, skip_locked=True)
    return out


def watchdog(
    conn: Conn, pipeline: Pipeline, now: datetime, worker: str, under_way: Iterable[ActiveTransit]
) -> Written:
    """The wall-clock rules (silence, overdue) over the transits under way that no
    batch holds now, on their stored state; in the caller's transaction."""
    out = Written()
    # (in the caller's transaction, where it checked that it holds the lease)
    mrns = _take_over(conn, pipeline, sorted(t.tracker_id for t in under_way), commit=False)
    rows = rule_state.read(conn, rule_state.lock(conn, sorted(mrns.values()), skip_locked=True))
    live = _load(pipeline, rows)
    pipeline.last_received = devices.last_seen(conn, sorted(live))
    changes: list[LifecycleEvent] = []
    out.result.alerts = pipeline.tick(now, changes, devices=sorted(live))
    out.result.lifecycle = changes
    out.transits = len(live)
    _save(conn, pipeline, rows, live, {}, worker)
    out.rows, out.alert_ids = write_result(conn, out.result)
    return out


def _take_over(
    conn: Conn, pipeline: Pipeline, device_ids: list[str], commit: bool = True
) -> dict[str, str]:
    """device -> MRN of these devices' transits under way, each with its rule state row
    (created the first time, and with ``commit`` committed at once: its cursor starts
    at the device's newest stored seq). The pipeline learns a transit it did not know."""
    if not device_ids:
        return {}
    found = rule_state.under_way(conn, device_ids)
    known = {t.mrn for t in pipeline.transits.values()}
    if any(mrn not in known for mrn, _ in found.values()):
        pipeline.transits.update(transits.under_way(conn))
    by_mrn = {t.mrn: t for t in pipeline.transits.values()}
    new = sorted(mrn for mrn, exists in found.values() if not exists and mrn in by_mrn)
    if new:
        held = rule_state.open_conditions(conn, new)
        rule_state.create(
            conn,
            [
                (m, by_mrn[m].tracker_id, encode(pipeline.initial_state(by_mrn[m], held[m])))
                for m in new
            ],
        )
        if commit:
            conn.commit()
    return {dev: mrn for dev, (mrn, _) in found.items() if mrn in by_mrn}


def _load(pipeline: Pipeline, rows: dict[str, rule_state.StateRow]) -> dict[str, str]:
    """Give the pipeline these transits as the database has them (status, rule state,
    the device's newest stored fix). Returns device -> MRN of those under way."""
    by_mrn = {t.mrn: t for t in pipeline.transits.values()}
    live: dict[str, str] = {}
    for mrn, row in rows.items():
        t = by_mrn.get(mrn)
        if t is None or State(row.status) not in UNDER_WAY:
            continue
        pipeline.take_over(replace(t, status=State(row.status)), decode(row.state))
        if row.last_fix_time is not None:
            pipeline.newest[row.device_id] = row.last_fix_time.timestamp()
        live[row.device_id] = mrn
    return live


def _evaluate(
    conn: Conn,
    pipeline: Pipeline,
    work: _Work,
    mrns: dict[str, str],
    now: datetime,
    worker: str,
    out: Written,
    skip_locked: bool,
) -> None:
    """Lock, read, plan per device, evaluate, write: the heart of :func:`ingest` and
    :func:`sweep`."""
    t = time.perf_counter()
    locked = rule_state.lock(conn, sorted(set(mrns.values())), skip_locked=skip_locked)
    t = out.lap("lock", t)
    rows = rule_state.read(conn, locked)
    live = _load(pipeline, rows)
    held = rule_state.held(conn, *_can_move(work, rows, live, skip_locked))
    t = out.lap("read", t)
    # The messages to evaluate, each device's in seq order (some held before).
    ruled: list[Message] = []
    holds: list[Decoded] = []
    release: list[tuple[str, int]] = []
    cursors: dict[str, Cursor] = {}
    for dev, msgs in work.by_device.items():
        if dev not in live:
            if not skip_locked:  # a sweep leaves a transit another transaction holds
                work.plain += msgs
            continue
        row = rows[live[dev]]
        arrived: list[tuple[int, Message]] = [(m.seq or 0, m) for m in msgs]
        waiting = [Waiting[Message](h.seq, h.waited_s, h, h.drained) for h in held.get(dev, [])]
        was = Cursor(row.last_seq, row.base_seq, row.skipped)
        p = plan(was, arrived, waiting)
        ruled += p.evaluate
        holds += [m for m in p.hold if isinstance(m, Decoded)]
        work.plain += [m for m in p.plain if isinstance(m, Decoded)]
        release += [(dev, s) for s in p.release]
        work.again += [m for m in p.duplicate if isinstance(m, Decoded)]
        out.duplicates += len(p.duplicate) + len(p.copy)
        if msgs or p.cursor != was:
            cursors[live[dev]] = p.cursor
    # Held messages decoded again where they stand in their device's order.
    redone = _decode_held(conn, pipeline, [m for m in ruled if not isinstance(m, Decoded)], now)
    again = {(d.device_id, d.seq): d for d in redone if isinstance(d, Decoded)}
    work.dead += [d for d in redone if isinstance(d, DeadLetter)]
    evaluated = [
        m if isinstance(m, Decoded) else again[(m.device_id, m.seq)]
        for m in ruled
        if isinstance(m, Decoded) or (m.device_id, m.seq) in again
    ]
    t = out.lap("plan", t)
    result = pipeline.evaluate(evaluated, now)
    if work.plain:
        _merge(result, pipeline.evaluate(work.plain, now, ruled=False))
    if work.again:
        _merge(result, _again(conn, pipeline, work.again, now))
    result.dead_letters = work.dead + result.dead_letters
    out.result = result
    out.held, out.released, out.transits = len(holds), len(release), len(cursors)
    t = out.lap("rules", t)
    rule_state.hold(
        conn, [(m.device_id, m.seq or 0, m.raw.topic, m.raw.payload, m.raw.sig) for m in holds]
    )
    rule_state.release(conn, release)
    _save(conn, pipeline, rows, live, cursors, worker)
    out.rows, out.alert_ids = write_result(conn, result)
    rule_state.note_seqs(conn, _newest_seqs(result))
    t = out.lap("write", t)
    # The risk scores of the transits evaluated, from what this batch brought, in a
    # savepoint: a score that cannot be made (a stored model or accumulators of another
    # layout, say, in a rolling upgrade) is logged and counted, and never costs the
    # batch its messages (the queue would hand it to the next worker, which would fail
    # the same way).
    try:
        with conn.transaction():
            risk.update(conn, pipeline, result, live)
    except psycopg.OperationalError:
        raise  # the connection: the whole batch is retried
    except (psycopg.Error, ValueError, KeyError, TypeError) as exc:
        log.error("risk scores of a batch not updated (%s: %s)", type(exc).__name__, exc)
        out.risk_errors = 1
    out.lap("risk", t)


HELD_WINDOW = 1000  # held messages read at once per device, past the batch's


def _can_move(
    work: _Work, rows: dict[str, rule_state.StateRow], live: dict[str, str], sweep: bool
) -> tuple[list[str], dict[str, int]]:
    """The devices whose held messages are worth reading now, and up to which seq: a
    sweep's (it skips gaps), and those whose next seq is in the batch (it may release
    what waits behind it). A batch that only lies beyond a gap holds its messages
    without reading what is held already (the leading worker of a pair would read the
    whole backlog over and over)."""
    devices: list[str] = []
    upto: dict[str, int] = {}
    for dev, mrn in live.items():
        last = rows[mrn].last_seq
        seqs = [m.seq for m in work.by_device.get(dev, []) if m.seq is not None]
        if sweep:
            devices.append(dev)  # all it holds: gaps may be skipped
        elif last is not None and last + 1 in seqs:
            devices.append(dev)
            upto[dev] = max([last, *seqs]) + HELD_WINDOW
    return sorted(devices), upto


def _decode_held(
    conn: Conn, pipeline: Pipeline, held: Sequence[Message], now: datetime
) -> list[Decoded | DeadLetter]:
    """Held messages read and decoded again, in order (they were valid when held; one
    that no longer is, its device's key changed meanwhile, becomes a dead letter)."""
    keys = [(h.device_id, h.seq) for h in held if isinstance(h, rule_state.HeldMessage)]
    raw = rule_state.payloads(conn, keys)
    return pipeline.decode([RawMessage(*raw[k]) for k in keys if k in raw], now)


def _again(conn: Conn, pipeline: Pipeline, messages: list[Decoded], now: datetime) -> BatchResult:
    """Messages evaluated before (a redelivery), stored again without rules: what was
    stored is not written twice, and a fix the rules' filter kept apart then (a jump)
    stays apart."""
    out = pipeline.evaluate(messages, now, ruled=False)
    apart = filtered.kept_apart(conn, sorted({(m.device_id, m.seq or 0) for m in messages}))
    out.fixes = [f for f in out.fixes if (f.device_id, f.seq, f.idx) not in apart]
    return out


def _merge(into: BatchResult, other: BatchResult) -> None:
    """Add what ``other`` made to ``into``."""
    into.fixes += other.fixes
    into.seal_events += other.seal_events
    into.dead_letters += other.dead_letters
    into.filtered += other.filtered
    into.alerts += other.alerts
    into.batteries += other.batteries
    into.lifecycle += other.lifecycle
    into.messages += other.messages
    into.statuses.update(other.statuses)


def _save(
    conn: Conn,
    pipeline: Pipeline,
    rows: dict[str, rule_state.StateRow],
    live: dict[str, str],
    cursors: dict[str, Cursor],
    worker: str,
) -> None:
    """Write back the state and cursor of the transits under way that were read, where
    they changed or this transaction took messages of theirs (``cursors``: so the row
    says which worker did, and counts a hand-off from another)."""
    out = []
    for mrn in sorted(live.values()):
        row = rows[mrn]
        was = Cursor(row.last_seq, row.base_seq, row.skipped)
        c = cursors.get(mrn, was)
        state = encode(pipeline.state_of(mrn))
        if mrn in cursors or state != row.state:
            out.append((mrn, c.last_seq, c.base, c.skipped, state))
    rule_state.save(conn, out, worker)


def _newest_seqs(result: BatchResult) -> dict[str, int]:
    """Each device's newest seq stored by this batch (fixes kept or filtered, seals)."""
    out: dict[str, int] = {}
    for dev, seq in [
        *((f.device_id, f.seq) for f in result.fixes),
        *((f.fix.device_id, f.fix.seq) for f in result.filtered),
        *((e.device_id, e.seq) for e in result.seal_events),
    ]:
        if seq > out.get(dev, -1):
            out[dev] = seq
    return out
