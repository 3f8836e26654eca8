from datetime import UTC, datetime, timedelta

import numpy as np

from transit.model import AlertType, SealEvent, SealStatus
from transit.rules.batch import TransitRules
from transit.rules.deviation import DeviationState, observe_deviation
from transit.rules.movement import Thresholds, TransitContext
from transit.rules.seal import check_seal

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
MRN = "26MYS001T0000003A2"


def deviation(debounce_s: float = 60, clear_s: float = 60) -> TransitRules:
    th = Thresholds(route_debounce_s=debounce_s, route_clear_s=clear_s)
    return TransitRules(TransitContext(MRN, "D", frozenset(), frozenset()), th)


def feed_batch(t: TransitRules, fixes: list[tuple[int, bool]]):
    """A batch of one transit's fixes (seconds after T0, inside); its alerts."""
    times = [T0 + timedelta(seconds=s) for s, _ in fixes]
    return observe_deviation(
        [t],
        np.zeros(1, dtype=np.int64),
        np.asarray([i for _, i in fixes], dtype=bool),
        np.asarray([x.timestamp() for x in times]),
        times,
        np.zeros(len(fixes)),
        np.zeros(len(fixes)),
        lambda idx: np.full(len(idx), 900.0),
    )


def feed(t: TransitRules, state: DeviationState, seconds: int, inside: bool):
    """One fix in a batch of its own: the alert it opens or clears, or None."""
    assert state is t.deviation
    out = feed_batch(t, [(seconds, inside)])
    assert len(out) <= 1
    return out[0] if out else None


def test_deviation_opens_only_after_the_debounce_window() -> None:
    rule = deviation(debounce_s=60, clear_s=60)
    state = rule.deviation
    events = [feed(rule, state, s, inside=False) for s in range(0, 60, 10)]
    assert events == [None] * 6
    ev = feed(rule, state, 60, inside=False)
    assert ev is not None and ev.type is AlertType.ROUTE_DEVIATION and ev.action == "open"
    assert feed(rule, state, 70, inside=False) is None  # one alert per condition


def test_a_short_excursion_raises_nothing() -> None:
    rule = deviation(debounce_s=60)
    state = rule.deviation
    out = [feed(rule, state, s, inside=(s not in (20, 30, 40))) for s in range(0, 200, 10)]
    assert all(e is None for e in out)


def test_deviation_clears_after_hysteresis_inside() -> None:
    rule = deviation(debounce_s=30, clear_s=30)
    state = rule.deviation
    for s in range(0, 40, 10):
        feed(rule, state, s, inside=False)
    assert state.alert_open
    assert feed(rule, state, 50, inside=True) is None
    assert feed(rule, state, 70, inside=False) is None  # bounced out: clock restarts
    feed(rule, state, 80, inside=True)
    ev = feed(rule, state, 110, inside=True)
    assert ev is not None and ev.action == "clear"


def test_late_and_duplicate_fixes_are_ignored_by_the_rule() -> None:
    rule = deviation(debounce_s=30)
    state = rule.deviation
    feed(rule, state, 100, inside=True)
    # Old fixes outside, arriving late, must not start a deviation.
    assert all(feed(rule, state, s, inside=False) is None for s in range(0, 100, 10))
    assert state.outside_since is None


def test_a_second_fix_at_the_time_of_the_one_before_counts_for_nothing() -> None:
    # Outside from 0 s; a fix inside at 50 s, the time of the one before, is ignored,
    # so the truck has been outside for 60 s at 60 s.
    fixes = [(s, False) for s in range(0, 51, 10)] + [(50, True), (60, False)]
    out = feed_batch(deviation(debounce_s=60), fixes)
    assert [(e.action, e.time) for e in out] == [("open", T0 + timedelta(seconds=60))]


def test_a_batch_overlapping_fixes_already_seen_counts_only_the_newer_ones() -> None:
    rule = deviation(debounce_s=60)
    assert feed_batch(rule, [(s, True) for s in range(0, 101, 10)]) == []
    # Inside, then outside from 60 s, says the part already seen; the rule counts from
    # 105 s, the first new fix (95 s, late again, counts for nothing).
    late = [(40, True), (50, True), *((s, False) for s in range(60, 101, 10))]
    new = [(s, False) for s in range(110, 181, 10)]
    out = feed_batch(rule, [*late, (105, False), (95, False), *new])
    assert [(e.action, e.time, e.details["outside_s"]) for e in out] == [
        ("open", T0 + timedelta(seconds=170), 65.0)
    ]


def test_a_batch_opens_and_clears_at_the_fixes_fix_by_fix_would() -> None:
    rule = deviation(debounce_s=30, clear_s=30)
    fixes = [(s, not 20 <= s < 90) for s in range(0, 200, 10)]
    out = feed_batch(rule, fixes)
    assert [(e.action, e.time) for e in out] == [
        ("open", T0 + timedelta(seconds=50)),
        ("clear", T0 + timedelta(seconds=120)),
    ]
    assert [e.details["distance_m"] for e in out] == [900.0, 900.0]


def _seal(status: SealStatus, seal_id: str = "ESL01-000001A") -> SealEvent:
    return SealEvent(device_id="D", seq=1, seal_id=seal_id, time=T0, status=status)


def test_seal_cut_on_a_transit_under_way_raises_seal_tampered() -> None:
    ev = check_seal(MRN, ("ESL01-000001A",), _seal(SealStatus.TAMPERED))
    assert ev is not None and ev.type is AlertType.SEAL_TAMPERED and ev.key == "ESL01-000001A"


def test_seal_opened_raises_seal_opened_and_sealed_raises_nothing() -> None:
    opened = check_seal(MRN, ("ESL01-000001A",), _seal(SealStatus.OPENED))
    assert opened is not None and opened.type is AlertType.SEAL_OPENED
    assert check_seal(MRN, ("ESL01-000001A",), _seal(SealStatus.SEALED)) is None


def test_undeclared_seal_raises_seal_mismatch() -> None:
    ev = check_seal(MRN, ("ESL01-000001A",), _seal(SealStatus.SEALED, "ESL09-999999Z"))
    assert ev is not None and ev.type is AlertType.SEAL_MISMATCH


def test_opening_at_the_destination_office_is_authorised_but_a_cut_is_not() -> None:
    assert (
        check_seal(MRN, ("ESL01-000001A",), _seal(SealStatus.OPENED), at_destination=True) is None
    )
    cut = check_seal(MRN, ("ESL01-000001A",), _seal(SealStatus.TAMPERED), at_destination=True)
    assert cut is not None and cut.type is AlertType.SEAL_TAMPERED
