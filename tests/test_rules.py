from datetime import UTC, datetime, timedelta

from transit.model import AlertType, SealEvent, SealStatus
from transit.rules.deviation import DeviationRule, DeviationState
from transit.rules.seal import check_seal

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
MRN = "26MYS001T0000003A2"


def feed(rule: DeviationRule, state: DeviationState, seconds: int, inside: bool):
    return rule.observe(
        state,
        mrn=MRN,
        device_id="D",
        time=T0 + timedelta(seconds=seconds),
        inside=inside,
        lat=0.0,
        lon=0.0,
        distance_m=900.0,
    )


def test_deviation_opens_only_after_the_debounce_window() -> None:
    rule, state = DeviationRule(debounce_s=60, clear_s=60), DeviationState()
    events = [feed(rule, state, s, inside=False) for s in range(0, 60, 10)]
    assert events == [None] * 6
    ev = feed(rule, state, 60, inside=False)
    assert ev is not None and ev.type is AlertType.ROUTE_DEVIATION and ev.action == "open"
    assert feed(rule, state, 70, inside=False) is None  # one alert per condition


def test_a_short_excursion_raises_nothing() -> None:
    rule, state = DeviationRule(debounce_s=60), DeviationState()
    out = [feed(rule, state, s, inside=(s not in (20, 30, 40))) for s in range(0, 200, 10)]
    assert all(e is None for e in out)


def test_deviation_clears_after_hysteresis_inside() -> None:
    rule, state = DeviationRule(debounce_s=30, clear_s=30), DeviationState()
    for s in range(0, 40, 10):
        feed(rule, state, s, inside=False)
    assert state.alert_open
    assert feed(rule, state, 50, inside=True) is None
    assert feed(rule, state, 70, inside=False) is None  # bounced out: clock restarts
    feed(rule, state, 80, inside=True)
    ev = feed(rule, state, 110, inside=True)
    assert ev is not None and ev.action == "clear"


def test_late_and_duplicate_fixes_are_ignored_by_the_rule() -> None:
    rule, state = DeviationRule(debounce_s=30), DeviationState()
    feed(rule, state, 100, inside=True)
    # Old fixes outside, arriving late, must not start a deviation.
    assert all(feed(rule, state, s, inside=False) is None for s in range(0, 100, 10))
    assert state.outside_since is None


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
