"""Ingest is elastic and nothing is stranded: workers come, stop and die while devices
publish, and every message the broker acknowledged is stored once, soon; a stopping
worker ends its session only once it is empty. On a broker and a database of the
tests' own (tests/elastic_stack.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.elastic_stack import (
    DEVICES,
    HELD,
    PARKED,
    Fleet,
    Workers,
    db_now,
    evaluated,
    own_stack,
    running,
    session_exists,
    slot_states,
    stored,
    wait_for,
)
from transit.config import Settings
from transit.db import membership


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Settings]:
    yield from own_stack(settings)


def test_4_to_1_to_3_workers_and_a_sigkill_strand_nothing(stack, tmp_path, capsys) -> None:
    url = stack.database_url
    group = "elastic"
    workers = Workers(stack, group, tmp_path)
    first = [f"el-{i}" for i in range(4)]
    fleet: Fleet | None = None
    try:
        for cid in first:
            workers.start(cid)
        wait_for("four workers running", lambda: running(url, group, first), 60)
        fleet = Fleet(stack, DEVICES, 0.05)  # 6 devices, 20 messages a second each
        fleet.thread.start()
        time.sleep(5)
        # 4 -> 1: three stop gracefully while the devices publish.
        for cid in first[1:]:
            workers.signal(cid, signal.SIGTERM)
        codes = [workers.wait(cid) for cid in first[1:]]
        assert codes == [0, 0, 0]
        with psycopg.connect(url, autocommit=True) as conn:
            ended = {
                s["client_id"]: (s["state"], s["drained"]) for s in membership.slots(conn, group)
            }
        # Each ended an empty session (the check after its DISCONNECT found nothing).
        assert [ended[c] for c in first[1:]] == [("left", 0)] * 3
        time.sleep(3)
        # 1 -> 3
        later = ["el-4", "el-5"]
        for cid in later:
            workers.start(cid)
        wait_for("two more workers running", lambda: running(url, group, later), 60)
        time.sleep(4)
        # One of them is killed and never comes back.
        killed_at = db_now(url)
        workers.signal("el-4", signal.SIGKILL)
        workers.wait("el-4")
        time.sleep(12)
        acked = fleet.finish()
        fleet = None
        ended = time.monotonic()

        newest = {d: max(q for dd, q in acked if dd == d) for d in DEVICES}

        def all_stored_and_evaluated() -> bool:
            cursors, held = evaluated(url, DEVICES)
            caught_up = all(cursors.get(d, 0) >= newest[d] for d in DEVICES) and held == 0
            return acked <= stored(url, DEVICES).keys() and caught_up

        deadline = ended + 30
        while time.monotonic() < deadline and not all_stored_and_evaluated():
            time.sleep(0.2)
        caught_up_s = time.monotonic() - ended
        rows = stored(url, DEVICES)
        cursors, held = evaluated(url, DEVICES)
        with psycopg.connect(url, autocommit=True) as conn:
            slot = {s["client_id"]: s for s in membership.slots(conn, group)}["el-4"]
            reaped = conn.execute(
                "SELECT sum((stats->>'reaped_messages')::int) FROM ingest_workers"
                " WHERE worker_id = ANY(%s)",
                (["el-0", "el-5"],),
            ).fetchone()[0]
        gone = [session_exists(stack, c) for c in [*first[1:], "el-4"]]
    finally:
        if fleet is not None:
            fleet.finish()
        workers.stop_all()
    drained_s = (slot["reaped_at"] - killed_at).total_seconds() if slot["reaped_at"] else None
    with capsys.disabled():
        print(
            f"\nelastic: {len(acked)} acknowledged, {len(acked & rows.keys())} stored and"
            f" evaluated ({caught_up_s:.1f} s after publishing ended); el-4 SIGKILLed, its session"
            f" drained by {slot['reaped_by']} {drained_s:.1f} s after the kill"
            f" ({slot['drained']} messages); reaped in all {reaped}"
        )
    missing = acked - rows.keys()
    assert not missing, f"{len(missing)} acknowledged messages not stored: {sorted(missing)[:5]}"
    assert all(n == 1 for n in rows.values())
    # And evaluated by the rules: each transit's cursor reached its newest acknowledged
    # message, none waits beyond a gap (within the 30 s above).
    assert {d: cursors.get(d, 0) >= newest[d] for d in DEVICES} == dict.fromkeys(DEVICES, True)
    assert held == 0
    # The dead member's session was drained by a live one and is gone.
    assert slot["state"] == "reaped" and slot["reaped_by"] in ("el-0", "el-5")
    assert slot["drained"] > 0 and reaped >= slot["drained"]
    assert gone == [False, False, False, False]


def test_the_last_member_keeps_its_session_and_the_next_worker_drains_it(stack, tmp_path) -> None:
    url = stack.database_url
    group = "elastic-park"
    workers = Workers(stack, group, tmp_path)
    fleet: Fleet | None = None
    try:
        workers.start("pk-0")
        wait_for("a worker running", lambda: running(url, group, ["pk-0"]), 60)
        # The only member stops: it may not take its session out of the group, or what
        # is published until another worker comes would be dropped by the broker.
        workers.signal("pk-0", signal.SIGTERM)
        assert workers.wait("pk-0") == 0
        assert slot_states(url, group)["pk-0"] == "parked"
        before = stored(url, PARKED)
        fleet = Fleet(stack, PARKED, 0.05)
        fleet.thread.start()
        time.sleep(3)
        acked = fleet.finish()
        fleet = None
        assert acked and not acked & before.keys()
        # A worker in another slot comes, and takes what waited in the parked session.
        workers.start("pk-1")
        wait_for(
            "the parked session reaped", lambda: slot_states(url, group)["pk-0"] == "reaped", 30
        )
        with psycopg.connect(url, autocommit=True) as conn:
            slot = {s["client_id"]: s for s in membership.slots(conn, group)}["pk-0"]
        missing = acked - stored(url, PARKED).keys()
    finally:
        if fleet is not None:
            fleet.finish()
        workers.stop_all()
    assert not missing, f"{len(missing)} acknowledged messages not stored"
    assert slot["reaped_by"] == "pk-1"
    assert slot["drained"] >= len(acked)


def test_a_stopping_worker_takes_what_the_broker_held_back_before_ending_its_session(
    stack, tmp_path
) -> None:
    """The broker sends a session what fits its inflight window (20 here) and holds the
    rest until acknowledgements come. A worker stopped while stuck (here on its stats
    row, locked by the test) has not heard anything for a while when it acknowledges
    what it holds: those acknowledgements release the rest, which a session ended at
    that moment would take with it."""
    url = stack.database_url
    group = "elastic-held"
    workers = Workers(stack, group, tmp_path)
    ids = ["hb-0", "hb-1"]
    fleet: Fleet | None = None
    blocker = psycopg.connect(url)
    try:
        for cid in ids:
            workers.start(cid)
        wait_for("two workers running", lambda: running(url, group, ids), 60)
        wait_for(
            "hb-1's stats row",
            lambda: blocker.execute(
                "SELECT 1 FROM ingest_workers WHERE worker_id = 'hb-1' FOR UPDATE"
            ).fetchone(),
            10,
        )
        time.sleep(1.5)  # hb-1 is stuck saving its stats
        fleet = Fleet(stack, HELD, 0.005)
        fleet.thread.start()
        time.sleep(2)
        acked = fleet.finish()
        fleet = None
        workers.signal("hb-1", signal.SIGTERM)  # hb-0 runs: hb-1 may leave the group
        time.sleep(2)
        blocker.rollback()
        assert workers.wait("hb-1") == 0
        with psycopg.connect(url, autocommit=True) as conn:
            slot = {s["client_id"]: s for s in membership.slots(conn, group)}["hb-1"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not acked <= stored(url, HELD).keys():
            time.sleep(0.2)
        missing = acked - stored(url, HELD).keys()
    finally:
        blocker.close()
        if fleet is not None:
            fleet.finish()
        workers.stop_all()
    assert len(acked) > 100
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost"
    # It ended its session empty: the check after the DISCONNECT found nothing more
    # (had it found some, the broker might as well have deleted them with it).
    assert (slot["state"], slot["drained"]) == ("left", 0)
