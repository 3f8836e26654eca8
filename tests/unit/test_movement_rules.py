"""Movement rules in event time: each alert type, and the near-misses that stay silent."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from transit.model import AlertType
from transit.rules.movement import (
    FixView,
    MovementState,
    Thresholds,
    TransitContext,
    observe_battery,
    observe_fix,
    watchdog,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TH = Thresholds()
CTX = TransitContext(
    "26MYS001T0000003A2",
    "TRK1",
    frozenset({"MY", "TH"}),
    frozenset({"MYKUL001", "MYBKH001", "THSDO001", "THBKK001"}),
)


def fix(
    s: float,
    lat: float = 5.0,
    lon: float = 100.4,
    speed: float | None = 70.0,
    country: str | None = "MY",
    zone: str | None = None,
) -> FixView:
    return FixView(T0 + timedelta(seconds=s), lat, lon, speed, country, zone)


def run(fixes, th=TH):
    state = MovementState()
    out = []
    for f in fixes:
        out += observe_fix(th, state, CTX, f)
    return [(e.type, e.action) for e in out]


def moving(seconds: range, lat0: float = 5.0):
    # 70 km/h north: about 0.0017 degrees every 10 s
    return [fix(s, lat=lat0 + s * 0.00017 / 1) for s in seconds]


def test_clean_driving_raises_nothing() -> None:
    assert run(moving(range(0, 3600, 10))) == []


def test_stop_longer_than_the_limit_outside_a_zone_is_unauthorized_then_cleared() -> None:
    fixes = [fix(s, speed=0.0) for s in range(0, 1000, 10)] + [fix(1000, speed=60.0)]
    assert run(fixes) == [
        (AlertType.UNAUTHORIZED_STOP, "open"),
        (AlertType.UNAUTHORIZED_STOP, "clear"),
    ]


def test_stop_just_under_the_limit_stays_silent() -> None:
    fixes = [fix(s, speed=0.0) for s in range(0, 890, 10)] + [fix(900, speed=60.0)]
    assert run(fixes) == []


def test_long_stop_at_a_declared_office_is_permitted() -> None:
    assert run([fix(s, speed=0.0, zone="MYBKH001") for s in range(0, 3600, 10)]) == []


def test_impossible_jump_raises_gps_jump_but_multipath_does_not() -> None:
    assert run([fix(0), fix(10, lat=5.0009), fix(20, lat=5.0002)]) == []  # ~100 m
    assert run([fix(0), fix(10, lat=5.1)]) == [(AlertType.GPS_JUMP, "open")]  # 11 km in 10 s


def test_gap_over_two_periods_is_a_signal_loss_and_just_under_is_not() -> None:
    assert run([fix(0), fix(119, lat=5.0002)]) == []
    assert run([fix(0), fix(121, lat=5.0002)]) == [
        (AlertType.SIGNAL_LOST, "open"),
        (AlertType.SIGNAL_LOST, "clear"),
    ]


def test_undeclared_country_and_office_raise_once() -> None:
    out = run(
        [
            fix(0, country="LA"),
            fix(10, country="LA"),
            fix(20, speed=0.0, zone="LAVTE001", country="LA"),
        ]
    )
    assert out == [(AlertType.UNEXPECTED_COUNTRY, "open"), (AlertType.WRONG_OFFICE, "open")]


def test_late_and_duplicate_fixes_raise_nothing() -> None:
    state = MovementState()
    assert observe_fix(TH, state, CTX, fix(500)) == []
    assert observe_fix(TH, state, CTX, fix(0, lat=9.0, country="LA")) == []  # late
    assert observe_fix(TH, state, CTX, fix(500)) == []  # duplicate


def test_battery_under_15_percent_opens_and_charging_clears() -> None:
    state = MovementState()
    assert [e.action for e in observe_battery(TH, state, CTX, T0, "TRK1", 16)] == []
    assert [e.action for e in observe_battery(TH, state, CTX, T0, "TRK1", 14)] == ["open"]
    assert observe_battery(TH, state, CTX, T0, "TRK1", 13) == []
    assert [e.action for e in observe_battery(TH, state, CTX, T0, "TRK1", 30)] == ["clear"]


def test_watchdog_finds_silence_on_the_wall_clock_and_overdue_transits() -> None:
    state = MovementState()
    now = T0 + timedelta(hours=5)
    assert watchdog(TH, now, CTX, state, now - timedelta(seconds=100), now + timedelta(1)) == []
    out = watchdog(TH, now, CTX, state, now - timedelta(seconds=130), now - timedelta(1))
    assert [e.type for e in out] == [AlertType.SIGNAL_LOST, AlertType.OVERDUE]
    assert watchdog(TH, now, CTX, state, now - timedelta(seconds=130), now - timedelta(1)) == []


def test_thresholds_can_be_set_per_corridor_or_transit() -> None:
    strict = replace(TH, stop_limit_s=60)
    assert run([fix(s, speed=0.0) for s in range(0, 70, 10)], strict) == [
        (AlertType.UNAUTHORIZED_STOP, "open")
    ]


def test_a_long_stop_in_a_parking_zone_is_permitted_but_not_outside_it() -> None:
    ctx = replace(CTX, parkings=frozenset({"MYPK0001"}))
    stop = [fix(s, speed=0.0, zone="MYPK0001") for s in range(0, 2400, 10)]
    state = MovementState()
    out = [e for f in stop for e in observe_fix(TH, state, ctx, f)]
    assert out == []  # no unauthorised stop and no wrong office: a parking is no office
    elsewhere = [fix(s, speed=0.0) for s in range(0, 2400, 10)]
    state = MovementState()
    out = [e for f in elsewhere for e in observe_fix(TH, state, ctx, f)]
    assert [(e.type, e.action) for e in out] == [(AlertType.UNAUTHORIZED_STOP, "open")]


def test_fixes_that_stay_jumped_are_evidence_of_one_alert() -> None:
    fixes = moving(range(0, 100, 10))
    jumped = [fix(s, lat=5.3, lon=100.4) for s in range(100, 140, 10)]
    assert (
        run(fixes + jumped)
        == [(AlertType.GPS_JUMP, "open")] + [(AlertType.GPS_JUMP, "evidence")] * 3
    )
