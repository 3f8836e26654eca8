"""Rule state and held messages (migration 0010): where ingest workers serialise per transit.

A batch's transaction locks the ``rule_state`` rows of its transits in MRN order
(:func:`lock`), reads them with the transit's status (:func:`read`, a statement of its
own after the lock, so it sees what the previous holder committed), and writes them
back (:func:`save`) with the rows the batch made; the commit releases them. The
watchdog and the sweep of held messages take rows with ``SKIP LOCKED``: a transit
being evaluated right now is neither silent nor stalled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from transit.db.alerts import open_sql
from transit.db.store import Conn
from transit.lifecycle import UNDER_WAY

_UNDER_WAY = sorted(s.value for s in UNDER_WAY)


@dataclass(frozen=True)
class StateRow:
    """One transit's row, read under its lock."""

    mrn: str
    device_id: str
    status: str  # the transit's, as committed now
    last_seq: int | None
    base_seq: int | None
    skipped: tuple[tuple[int, int], ...]
    state: dict[str, Any]
    last_fix_time: datetime | None  # the device's newest stored fix


# A worker whose counters are older than this is gone (its session is for the
# membership's reaper); one within it may still hold the message a gap waits for.
LIVE_WORKER_S = 15.0
DRAIN_SLACK_S = 0.5  # a message on its way from the broker to a drained worker
MAX_SEQ = 2**63 - 1
# The time up to which every live worker has been drained (none live: infinity).
_DRAINED = (
    "WITH w AS (SELECT coalesce(min(coalesce(drained_at, '-infinity')), 'infinity')"
    " AS drained FROM ingest_workers WHERE updated_at > now() - make_interval(secs => %s))"
)


@dataclass(frozen=True)
class HeldMessage:
    """A message held beyond a gap in its device's seqs (its bytes: :func:`payloads`)."""

    device_id: str
    seq: int
    waited_s: float
    drained: bool  # every live ingest worker has been drained since it was held


def under_way(conn: Conn, device_ids: list[str]) -> dict[str, tuple[str, bool]]:
    """The transit under way of each of these devices that has one: device -> (MRN,
    whether its rule state row exists)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT t.tracker_id, t.mrn, r.mrn IS NOT NULL FROM transits t"
            " LEFT JOIN rule_state r ON r.mrn = t.mrn"
            " WHERE t.tracker_id = ANY(%s) AND t.status = ANY(%s)",
            (device_ids, _UNDER_WAY),
        ).fetchall()
    return {r[0]: (r[1].strip(), bool(r[2])) for r in rows}


def open_conditions(conn: Conn, mrns: list[str]) -> dict[str, set[tuple[str, str]]]:
    """``(type, cond_key)`` of each transit's alerts whose condition still holds."""
    out: dict[str, set[tuple[str, str]]] = {m: set() for m in mrns}
    with conn.cursor(row_factory=tuple_row) as cur:
        for mrn, kind, key in cur.execute(
            f"SELECT mrn, type, cond_key FROM alerts WHERE mrn = ANY(%s) AND {open_sql()}",
            (mrns,),
        ):
            out.setdefault(mrn.strip(), set()).add((kind, key))
    return out


def create(conn: Conn, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
    """Create the rows of transits taken over by the rules: (MRN, device, initial state).

    The cursor starts at the device's newest stored seq, so that what it sent before
    is never taken for a gap, and the first two messages after the release, at two
    workers, cannot swap. A row that exists is left as it is."""
    rows = sorted(rows)
    if not rows:
        return
    conn.execute(
        "INSERT INTO rule_state (mrn, device_id, last_seq, base_seq, state)"
        " SELECT x.mrn, x.dev, d.last_seq, d.last_seq, x.state"
        " FROM unnest(%s::text[], %s::text[], %s::jsonb[]) AS x(mrn, dev, state)"
        " LEFT JOIN devices d ON d.device_id = x.dev ORDER BY x.mrn"
        " ON CONFLICT (mrn) DO NOTHING",
        (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [json.dumps(r[2]) for r in rows],
        ),
    )


def lock(conn: Conn, mrns: list[str], skip_locked: bool = False) -> list[str]:
    """Lock these transits' rows in MRN order until the transaction ends; with
    ``skip_locked``, only those no other transaction holds. Returns the MRNs locked."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT mrn FROM rule_state WHERE mrn = ANY(%s) ORDER BY mrn FOR UPDATE"
            + (" SKIP LOCKED" if skip_locked else ""),
            (sorted(mrns),),
        ).fetchall()
    return [r[0].strip() for r in rows]


def read(conn: Conn, mrns: list[str]) -> dict[str, StateRow]:
    """The rows of these (locked) transits, with each transit's status and its device's
    newest stored fix as committed now."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT r.mrn, r.device_id, t.status, r.last_seq, r.base_seq, r.skipped, r.state,"
            " d.last_fix_time FROM rule_state r JOIN transits t ON t.mrn = r.mrn"
            " LEFT JOIN devices d ON d.device_id = r.device_id WHERE r.mrn = ANY(%s)",
            (mrns,),
        ).fetchall()
    return {
        r[0].strip(): StateRow(
            r[0].strip(),
            r[1],
            r[2],
            r[3],
            r[4],
            tuple((int(lo), int(hi)) for lo, hi in r[5]),
            r[6],
            r[7],
        )
        for r in rows
    }


def save(
    conn: Conn,
    rows: list[tuple[str, int | None, int | None, tuple[tuple[int, int], ...], dict[str, Any]]],
    worker: str,
) -> None:
    """Write back (MRN, last seq, base seq, skipped gaps, state) of locked transits,
    counting a hand-off when another worker wrote the row last."""
    if not rows:
        return
    doc = [
        {
            "mrn": m,
            "last_seq": last,
            "base_seq": base,
            "skipped": [list(g) for g in gaps],
            "state": state,
        }
        for m, last, base, gaps, state in rows
    ]
    conn.execute(
        "UPDATE rule_state r SET last_seq = x.last_seq, base_seq = x.base_seq,"
        " skipped = x.skipped, state = x.state, version = r.version + 1,"
        " handoffs = r.handoffs + (r.last_worker IS NOT NULL AND r.last_worker <> %s)::int,"
        " last_worker = %s, updated_at = now()"
        " FROM jsonb_to_recordset(%s::jsonb)"
        "   AS x(mrn text, last_seq int8, base_seq int8, skipped jsonb, state jsonb)"
        " WHERE r.mrn = x.mrn",
        (worker, worker, json.dumps(doc)),
    )


def held(
    conn: Conn, device_ids: list[str], upto: dict[str, int] | None = None
) -> dict[str, list[HeldMessage]]:
    """The messages held for these devices (with ``upto``, those up to the device's
    seq there), in seq order, with how long each waited and whether every live worker
    has been drained since (none live: drained)."""
    out: dict[str, list[HeldMessage]] = {}
    if not device_ids:
        return out
    bounds = [(upto or {}).get(d, MAX_SEQ) for d in device_ids]
    with conn.cursor(row_factory=tuple_row) as cur:
        for dev, seq, waited, drained in cur.execute(
            _DRAINED
            + " SELECT p.device_id, p.seq, extract(epoch FROM now() - p.received_at)::float8,"
            " p.received_at + make_interval(secs => %s) <= w.drained"
            " FROM unnest(%s::text[], %s::int8[]) AS x(dev, upto)"
            " JOIN pending_messages p ON p.device_id = x.dev AND p.seq <= x.upto, w"
            " ORDER BY p.device_id, p.seq",
            (LIVE_WORKER_S, DRAIN_SLACK_S, device_ids, bounds),
        ):
            out.setdefault(dev, []).append(HeldMessage(dev, int(seq), float(waited), drained))
    return out


def payloads(
    conn: Conn, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[str, bytes, str | None]]:
    """(topic, payload, sig) of held messages, by (device, seq)."""
    if not keys:
        return {}
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT p.device_id, p.seq, p.topic, p.payload, p.sig FROM pending_messages p"
            " JOIN unnest(%s::text[], %s::int8[]) AS x(dev, seq)"
            " ON p.device_id = x.dev AND p.seq = x.seq",
            ([d for d, _ in keys], [q for _, q in keys]),
        ).fetchall()
    return {(r[0], int(r[1])): (r[2], bytes(r[3]), r[4]) for r in rows}


def hold(conn: Conn, messages: list[tuple[str, int, str, bytes, str | None]]) -> None:
    """Keep (device, seq, topic, payload, sig) beyond a gap, in the caller's transaction
    (committed before the message is acknowledged); a copy held already stays as it
    is. Their devices were heard."""
    if not messages:
        return
    heard = sorted({m[0] for m in messages})
    conn.execute("UPDATE devices SET last_seen = now() WHERE device_id = ANY(%s)", (heard,))
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS pending_stage (device_id text, seq int8, topic text,"
        " payload bytea, sig text) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur, cur.copy("COPY pending_stage FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["text", "int8", "text", "bytea", "text"])
        for m in messages:
            cp.write_row(m)
    conn.execute(
        "INSERT INTO pending_messages (device_id, seq, topic, payload, sig)"
        " SELECT * FROM pending_stage ON CONFLICT DO NOTHING"
    )


def release(conn: Conn, done: list[tuple[str, int]]) -> None:
    """Forget held messages that have been dealt with: (device, seq)."""
    if not done:
        return
    conn.execute(
        "DELETE FROM pending_messages p USING unnest(%s::text[], %s::int8[]) AS x(dev, seq)"
        " WHERE p.device_id = x.dev AND p.seq = x.seq",
        ([d for d, _ in done], [s for _, s in done]),
    )


def waiting_devices(conn: Conn, min_s: float, max_s: float, limit: int = 500) -> list[str]:
    """Devices with held messages a sweep can move on: one that has waited ``max_s``,
    or ``min_s`` with every live worker drained since (a gap to skip), or one that is
    next in its transit's seq order (left beyond a batch's reading window)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            _DRAINED + " SELECT p.device_id FROM pending_messages p, w"
            " WHERE p.received_at < now() - make_interval(secs => %s)"
            " OR (p.received_at < now() - make_interval(secs => %s)"
            "     AND p.received_at + make_interval(secs => %s) <= w.drained)"
            " UNION SELECT r.device_id FROM rule_state r JOIN pending_messages p"
            " ON p.device_id = r.device_id AND p.seq = r.last_seq + 1 LIMIT %s",
            (LIVE_WORKER_S, max_s, min_s, DRAIN_SLACK_S, limit),
        ).fetchall()
    return sorted(r[0] for r in rows)


def rows_of_devices(conn: Conn, device_ids: list[str]) -> dict[str, str]:
    """device -> MRN of the rule state rows of transits under way for these devices."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT r.device_id, r.mrn FROM rule_state r JOIN transits t ON t.mrn = r.mrn"
            " WHERE r.device_id = ANY(%s) AND t.status = ANY(%s)",
            (device_ids, _UNDER_WAY),
        ).fetchall()
    return {r[0]: r[1].strip() for r in rows}


def handoffs(conn: Conn) -> dict[str, tuple[int, int, str | None]]:
    """Each transit's (batches evaluated, hand-offs between workers, last worker)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT mrn, version, handoffs, last_worker FROM rule_state").fetchall()
    return {r[0].strip(): (int(r[1]), int(r[2]), r[3]) for r in rows}


def note_seqs(conn: Conn, newest: dict[str, int]) -> None:
    """Move each device's newest stored seq on to ``newest`` where it is newer (where
    the cursor of the device's next transit starts)."""
    if not newest:
        return
    devs = sorted(newest)
    conn.execute(
        "UPDATE devices d SET last_seq = x.seq FROM unnest(%s::text[], %s::int8[]) AS x(dev, seq)"
        " WHERE d.device_id = x.dev AND (d.last_seq IS NULL OR d.last_seq < x.seq)",
        (devs, [newest[d] for d in devs]),
    )


def note_drained(conn: Conn, worker: str, seconds_ago: float) -> None:
    """The worker had nothing in hand ``seconds_ago`` seconds ago (see ``held``)."""
    conn.execute(
        "UPDATE ingest_workers SET drained_at = clock_timestamp() - make_interval(secs => %s)"
        " WHERE worker_id = %s",
        (seconds_ago, worker),
    )


def start_over(conn: Conn, device_id: str, mrn: str, last_seq: int | None) -> None:
    """A transit declared again (a simulated fleet): its rules start from nothing, its
    device's held messages are dropped, and the device's newest stored seq is set to
    ``last_seq`` (a simulator starts its seqs over)."""
    conn.execute("DELETE FROM rule_state WHERE mrn = %s", (mrn,))
    conn.execute("DELETE FROM pending_messages WHERE device_id = %s", (device_id,))
    conn.execute("UPDATE devices SET last_seq = %s WHERE device_id = %s", (last_seq, device_id))
