"""A device's messages are evaluated in seq order, whichever worker has which: the pure
planner (transit/ingest/sequencing.py) and the rule state's JSON codec."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from transit.ingest.sequencing import SKIPPED_KEPT, Cursor, Plan, Waiting, plan
from transit.rules.deviation import DeviationState
from transit.rules.movement import FixView, MovementState
from transit.rules.state import RuleState, decode, encode


def test_contiguous_messages_are_evaluated_in_seq_order_whatever_order_they_came() -> None:
    p = plan(Cursor(4, 4), [(7, "m7"), (5, "m5"), (6, "m6")])
    assert p.evaluate == ["m5", "m6", "m7"]
    assert p.cursor.last_seq == 7 and p.hold == [] and p.release == []


def test_a_message_beyond_a_gap_is_held_and_the_cursor_stays() -> None:
    p = plan(Cursor(4, 4), [(5, "m5"), (7, "m7"), (8, "m8")])
    assert p.evaluate == ["m5"]
    assert p.hold == ["m7", "m8"]
    assert p.cursor == Cursor(5, 4)


def test_held_messages_go_on_when_the_gap_fills() -> None:
    held = [Waiting(7, 0.3, "m7"), Waiting(8, 0.3, "m8")]
    p = plan(Cursor(5, 4), [(6, "m6")], held)
    assert p.evaluate == ["m6", "m7", "m8"]
    assert p.release == [7, 8]
    assert p.hold == [] and p.cursor.last_seq == 8


def test_a_gap_is_skipped_once_every_worker_has_drained_since_and_the_wait_is_over() -> None:
    held = [Waiting(9, 5.2, "m9", drained=True), Waiting(10, 1.0, "m10")]
    p = plan(Cursor(5, 4), [], held, min_s=5.0)
    assert p.evaluate == ["m9", "m10"]
    assert p.release == [9, 10]
    assert p.cursor == Cursor(10, 4, ((6, 8),))


def test_a_gap_holds_while_some_worker_may_still_have_the_missing_message() -> None:
    # Waited long, but a worker lags (a backlog): the predecessor is likely in its hands.
    held = [Waiting(9, 40.0, "m9", drained=False)]
    p = plan(Cursor(5, 4), [], held, min_s=5.0, max_s=60.0)
    assert p.evaluate == [] and p.cursor == Cursor(5, 4)


def test_a_gap_is_skipped_after_the_longest_wait_whatever_the_workers_say() -> None:
    held = [Waiting(9, 60.0, "m9", drained=False)]
    assert plan(Cursor(5, 4), [], held, min_s=5.0, max_s=60.0).evaluate == ["m9"]


def test_a_gap_before_a_message_that_has_not_waited_long_enough_holds() -> None:
    held = [Waiting(9, 4.9, "m9", drained=True)]
    p = plan(Cursor(5, 4), [(11, "m11")], held, min_s=5.0)
    assert p.evaluate == [] and p.release == []
    assert p.hold == ["m11"]  # m9 stays held where it is
    assert p.cursor == Cursor(5, 4)


def test_the_longest_wait_beyond_a_gap_counts_not_the_first_message() -> None:
    # m9 came recently, m10 long ago: the gap before m9 has lasted as long as m10 waited.
    held = [Waiting(9, 0.5, "m9", drained=True), Waiting(10, 6.0, "m10", drained=True)]
    p = plan(Cursor(5, 4), [], held, min_s=5.0)
    assert p.evaluate == ["m9", "m10"]
    assert p.cursor.skipped == ((6, 8),)


def test_a_redelivered_message_is_acknowledged_only() -> None:
    p = plan(Cursor(8, 2), [(7, "again"), (9, "m9"), (9, "m9 twice")])
    assert p.duplicate == ["again"] and p.copy == ["m9 twice"]
    assert p.evaluate == ["m9"]


def test_a_copy_of_a_held_message_is_acknowledged_only() -> None:
    p = plan(Cursor(5, 2), [(8, "copy")], [Waiting(8, 1.0, "m8")])
    assert p.copy == ["copy"] and p.hold == [] and p.evaluate == []


def test_messages_sent_before_the_rules_took_the_device_over_are_stored_plain() -> None:
    p = plan(Cursor(10, 10), [(9, "old"), (11, "m11")])
    assert p.plain == ["old"]
    assert p.evaluate == ["m11"]


def test_a_message_from_a_skipped_gap_is_evaluated_late_and_only_once() -> None:
    cursor = Cursor(12, 2, ((6, 8),))
    p = plan(cursor, [(7, "m7"), (13, "m13")])
    assert p.evaluate == ["m7", "m13"]
    assert p.cursor.skipped == ((6, 6), (8, 8))
    again = plan(p.cursor, [(7, "m7 again")])
    assert again.duplicate == ["m7 again"] and again.evaluate == []


def test_a_device_never_heard_starts_at_its_lowest_seq_once_no_worker_holds_a_lower() -> None:
    first = plan(Cursor(), [(3, "m3"), (2, "m2")])
    assert first.hold == ["m3", "m2"] and first.evaluate == []  # seq 1 may be on its way
    waiting = [Waiting(2, 0.1, "m2"), Waiting(3, 0.1, "m3")]
    assert plan(Cursor(), [(4, "m4")], waiting).hold == ["m4"]
    drained = [Waiting(2, 5.0, "m2", drained=True), Waiting(3, 5.0, "m3", drained=True)]
    p = plan(Cursor(), [(4, "m4")], drained)
    assert p.evaluate == ["m2", "m3", "m4"]
    assert p.cursor == Cursor(4, 1)
    late = plan(p.cursor, [(1, "m1")])
    assert late.plain == ["m1"]  # before the stream started: stored, no rules


def test_forgotten_gaps_fall_below_the_base() -> None:
    cursor = Cursor(3 * SKIPPED_KEPT, 0, tuple((3 * k + 1, 3 * k + 1) for k in range(SKIPPED_KEPT)))
    p = plan(cursor, [], [Waiting(3 * SKIPPED_KEPT + 2, 9.0, "m", drained=True)])
    assert len(p.cursor.skipped) == SKIPPED_KEPT
    assert p.cursor.base == 1
    assert plan(p.cursor, [(1, "old")]).plain == ["old"]


def _deliver(seqs: list[int], workers: int, rng: random.Random) -> list[list[int]]:
    """Round robin over ``workers``, each taking batches of random size: the batches
    in the order their transactions happen to take the lock."""
    shares = [seqs[w::workers] for w in range(workers)]
    batches: list[list[int]] = []
    for share in shares:
        k = 0
        while k < len(share):
            n = rng.randint(1, 5)
            batches.append(share[k : k + n])
            k += n
    rng.shuffle(batches)
    return batches


@given(st.integers(2, 4), st.integers(1, 60), st.randoms(use_true_random=False))
def test_any_split_over_workers_evaluates_every_message_once_in_seq_order(
    workers: int, count: int, rng: random.Random
) -> None:
    seqs = list(range(1, count + 1))
    batches = _deliver(seqs, workers, rng)
    cursor = Cursor(0, 0)
    held: dict[int, int] = {}
    evaluated: list[int] = []
    for batch in batches:
        p: Plan[int] = plan(cursor, [(s, s) for s in batch], [Waiting(s, 0.1, s) for s in held])
        evaluated += p.evaluate
        for s in p.release:
            held.pop(s)
        held.update({s: s for s in p.hold})
        cursor = p.cursor
    assert evaluated == seqs
    assert held == {} and cursor.skipped == ()


_times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
_opt_times = st.none() | _times
_floats = st.floats(-180, 180, allow_nan=False)
_fix = st.builds(
    FixView,
    _times,
    _floats,
    _floats,
    st.none() | st.floats(0, 400, allow_nan=False),
    st.none() | st.sampled_from(["MY", "TH", "LA"]),
    st.none() | st.sampled_from(["THBKK001", "MYKUL001"]),
)
_states = st.builds(
    RuleState,
    st.builds(DeviationState, _opt_times, _opt_times, _opt_times, st.booleans()),
    st.builds(
        MovementState,
        st.none() | _fix,
        _opt_times,
        st.booleans(),
        st.sets(st.tuples(st.sampled_from(["gps_jump", "low_battery"]), st.text(max_size=30))),
    ),
)


@given(_states)
def test_rule_state_survives_its_json_codec(state: RuleState) -> None:
    # Through JSON text, as the database keeps it.
    assert decode(json.loads(json.dumps(encode(state)))) == state


def test_rule_state_json_is_the_same_for_equal_states() -> None:
    t = datetime(2026, 11, 23, 8, tzinfo=UTC)
    a = RuleState(movement=MovementState(open_keys={("b", "2"), ("a", "1")}))
    b = RuleState(movement=MovementState(open_keys={("a", "1"), ("b", "2")}))
    assert json.dumps(encode(a)) == json.dumps(encode(b))
    late = RuleState(deviation=DeviationState(last_time=t + timedelta(seconds=1)))
    assert decode(encode(late)).deviation.last_time == t + timedelta(seconds=1)
