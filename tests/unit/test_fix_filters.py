"""The ingest filters, pure: each reason, its bound, and that a filtered fix goes no
further (not stored with the others, not given to the rules)."""

from __future__ import annotations

import json
import random
import typing
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from firmware_sim.scenario import fleet_plan
from transit.api.routes.filtered_fixes import Reason
from transit.devices import payload as wire
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.types import ActiveTransit
from transit.model import AlertType, Fix
from transit.rules.batch import TransitRules
from transit.rules.filters import REASONS, FixFilters, find_jumps, screen_fixes
from transit.rules.movement import FixView, MovementState, TransitContext, observe_fix

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEV = "TRKF"


def _fix(
    dt_s: float = 0.0, lat: float = 3.1, lon: float = 101.6, hdop: float | None = None, **kw
) -> Fix:
    return Fix(
        device_id=kw.get("device_id", DEV),
        seq=kw.get("seq", 1),
        idx=kw.get("idx", 0),
        time=NOW + timedelta(seconds=dt_s),
        lat=lat,
        lon=lon,
        hdop=hdop,
    )


def _reasons(fixes, newest=None, bounds=None, now=NOW) -> list[str]:
    sc = screen_fixes(fixes, now, newest or {}, bounds or FixFilters())
    return [REASONS[c] or "ok" for c in sc.code.tolist()]


def test_a_fix_beyond_the_clock_tolerance_is_filtered_as_future() -> None:
    fixes = [_fix(-60), _fix(299), _fix(301), _fix(86_400), _fix(365 * 86_400)]
    assert _reasons(fixes) == ["ok", "ok", "future", "future", "future"]


def test_the_clock_tolerance_is_configurable() -> None:
    assert _reasons([_fix(1800)], bounds=FixFilters(future_s=3600)) == ["ok"]
    assert _reasons([_fix(61)], bounds=FixFilters(future_s=60)) == ["future"]


def test_a_fix_far_behind_the_devices_newest_is_stale_but_a_late_backlog_is_not() -> None:
    newest = {DEV: NOW.timestamp()}
    week = 7 * 86_400
    # A backlog after a tunnel or an outage, uploaded after newer fixes: accepted.
    backlog = [_fix(-3600 * h, idx=h) for h in range(1, 48)]
    assert set(_reasons(backlog, newest)) == {"ok"}
    # A clock that lost its time (a week and more behind the newest fix): stale.
    assert _reasons([_fix(-week + 60), _fix(-week - 60), _fix(-20 * 365 * 86_400)], newest) == [
        "ok",
        "stale",
        "stale",
    ]
    # Another device's newest is no reference.
    assert _reasons([_fix(-week - 60, device_id="OTHER")], newest) == ["ok"]


def test_the_stale_reference_is_the_newest_fix_stored_or_in_the_batch() -> None:
    # No fix stored yet: the batch's own newest fix is the reference.
    assert _reasons([_fix(-8 * 86_400), _fix(0)]) == ["stale", "ok"]
    # A filtered fix is no reference: the future one does not make the others stale.
    assert _reasons([_fix(-86_400), _fix(365 * 86_400)]) == ["ok", "future"]
    newest = {DEV: NOW.timestamp() + 61}
    assert _reasons([_fix(0)], bounds=FixFilters(stale_s=60), newest=newest) == ["stale"]
    sc = screen_fixes(
        [_fix(-10), _fix(-5)], NOW, {DEV: (NOW - timedelta(days=1)).timestamp()}, FixFilters()
    )
    assert sc.newest == {DEV: (NOW - timedelta(seconds=5)).timestamp()}


@pytest.mark.parametrize(("lat", "lon"), [(91, 0), (-90.5, 10), (10, 180.5), (10, -181), (1e9, 1)])
def test_coordinates_out_of_range_are_filtered(lat: float, lon: float) -> None:
    assert _reasons([_fix(lat=lat, lon=lon)]) == ["out_of_range"]


def test_the_edges_of_the_range_are_positions() -> None:
    assert _reasons([_fix(lat=90, lon=180), _fix(lat=-90, lon=-180)]) == ["ok", "ok"]


def test_null_island_is_filtered_but_the_equator_and_the_meridian_are_not() -> None:
    assert _reasons([_fix(lat=0, lon=0), _fix(lat=0, lon=9.5), _fix(lat=51.5, lon=0)]) == [
        "null_island",
        "ok",
        "ok",
    ]


def test_a_poor_hdop_is_filtered_and_a_fix_without_one_passes() -> None:
    fixes = [_fix(hdop=10.5), _fix(hdop=10.0), _fix(hdop=None), _fix(hdop=0.9)]
    assert _reasons(fixes) == ["poor_accuracy", "ok", "ok", "ok"]
    assert _reasons([_fix(hdop=4.0)], bounds=FixFilters(max_hdop=3)) == ["poor_accuracy"]


def test_the_first_reason_that_applies_is_given() -> None:
    fixes = [_fix(86_400, lat=0, lon=0), _fix(86_400, hdop=50), _fix(lat=95, lon=0, hdop=50)]
    assert _reasons(fixes) == ["null_island", "future", "out_of_range"]


def test_a_filtered_fix_says_what_was_wrong() -> None:
    fixes = [_fix(86_400), _fix(hdop=25), _fix(lat=91), _fix(-8 * 86_400), _fix(lat=0, lon=0)]
    fixes.append(_fix(0))  # the newest: the stale one's reference
    sc = screen_fixes(fixes, NOW, {}, FixFilters())
    details = {f.reason: f.detail for f in sc.filtered(FixFilters(), NOW)}
    assert details["future"] == "86400 s ahead of the server clock (tolerance 300 s)"
    assert details["poor_accuracy"] == "hdop 25 above 10"
    assert "lat 91.0" in details["out_of_range"]
    assert details["stale"] == "691200 s older than the device's newest fix (bound 604800 s)"
    assert "0, lon 0" in details["null_island"]
    assert sc.accepted() == [fixes[-1]]


def test_filter_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_hdop"):
        FixFilters(max_hdop=0)


def test_the_api_offers_every_reason_the_filters_give() -> None:
    assert typing.get_args(Reason) == REASONS[1:]


# -- Through the pipeline: a transit under way on MY-TH-BKK ---------------------------------


@pytest.fixture(scope="module")
def engine() -> GeofenceEngine:
    corridors, offices = load_geojson(acts_network())
    return GeofenceEngine(corridors, offices, load(default_path()))


@pytest.fixture
def under_way(engine):
    plan = next(
        p
        for p in fleet_plan(acts_network(), 6, seed=5, incidents=False, traffic=False)
        if p.corridor_id == "MY-TH-BKK"
    )
    p = Pipeline(engine)
    p.devices = {plan.device_id: None}
    transit = ActiveTransit(
        plan.mrn,
        plan.device_id,
        plan.corridor_id,
        (),
        tuple(plan.countries),
        (plan.office_departure, *plan.offices_transit, plan.office_destination),
        NOW + timedelta(days=3),
    )
    p.set_transits({plan.device_id: transit}, set())
    return p, plan.truck(1)


def _drive(truck, steps: int, t0: datetime) -> list[wire.FixV1]:
    """The truck's fixes for ``steps`` reporting intervals from ``t0``."""
    out = []
    for k in range(steps):
        tel, _ = truck.step(t0 + timedelta(seconds=truck.interval_s * k))
        out += tel.fixes
    return out


def _message(device: str, seq: int, fixes: list[wire.FixV1]) -> RawMessage:
    body = wire.TelemetryV1(v=1, seq=seq, fixes=fixes)
    return RawMessage(wire.topic_for(device, "telemetry"), wire.encode(body))


def _moved(f: wire.FixV1, **changes) -> wire.FixV1:
    return f.model_copy(update=changes)


def test_a_jumped_fix_raises_gps_jump_and_goes_no_further(under_way) -> None:
    p, truck = under_way
    t0 = NOW - timedelta(minutes=10)
    good = _drive(truck, 30, t0)
    # Fixes 10 to 19 jumped 30 km north (90 s: longer than the deviation debounce).
    sent = [_moved(f, lat=f.lat + 0.27) if 10 <= i < 20 else f for i, f in enumerate(good)]
    out = p.process(
        [_message(truck.device_id, 1, sent[:15]), _message(truck.device_id, 2, sent[15:])], now=NOW
    )
    assert [f.reason for f in out.filtered] == ["jump"] * 10
    assert {f.fix.idx + 15 * (f.fix.seq - 1) for f in out.filtered} == set(range(10, 20))
    assert len(out.fixes) == 20 and all(f.lat < good[0].lat + 0.1 for f in out.fixes)
    # One alert for the jump (the rest its evidence); the rules saw no deviation.
    assert [(a.type, a.action) for a in out.alerts] == [(AlertType.GPS_JUMP, "open")] + [
        (AlertType.GPS_JUMP, "evidence")
    ] * 9
    assert "km/h" in out.filtered[0].detail


def test_fixes_at_null_island_are_not_fed_to_the_rules(under_way) -> None:
    p, truck = under_way
    good = _drive(truck, 30, NOW - timedelta(minutes=10))
    # A receiver without a position writes 0, 0 for 90 s, in one message.
    sent = [_moved(f, lat=0.0, lon=0.0) if 10 <= i < 20 else f for i, f in enumerate(good)]
    out = p.process([_message(truck.device_id, 1, sent)], now=NOW)
    assert [f.reason for f in out.filtered] == ["null_island"] * 10
    assert out.alerts == []  # no jump, no deviation
    assert [f.idx for f in out.fixes] == [*range(10), *range(20, 30)]
    assert out.dead_letters == []


def test_one_bad_fix_in_a_backlog_keeps_the_good_ones(under_way) -> None:
    p, truck = under_way
    good = _drive(truck, 5, NOW - timedelta(minutes=5))
    sent = [*good[:2], _moved(good[2], lat=91.5, lon=200.0), *good[3:]]
    out = p.process([_message(truck.device_id, 1, sent)], now=NOW)
    assert out.dead_letters == []
    assert [(f.reason, f.fix.idx) for f in out.filtered] == [("out_of_range", 2)]
    assert [f.idx for f in out.fixes] == [0, 1, 3, 4]


def test_future_and_stale_fixes_are_filtered_across_batches(under_way) -> None:
    p, truck = under_way
    good = _drive(truck, 3, NOW - timedelta(minutes=1))
    year = _moved(good[2], t=NOW + timedelta(days=365))
    out = p.process([_message(truck.device_id, 1, [*good[:2], year])], now=NOW)
    assert [f.reason for f in out.filtered] == ["future"] and len(out.fixes) == 2
    assert p.newest[truck.device_id] == good[1].t.timestamp()  # the future fix is no reference
    old = _moved(good[0], t=good[0].t - timedelta(days=8))
    out = p.process([_message(truck.device_id, 2, [old])], now=NOW)
    assert [f.reason for f in out.filtered] == ["stale"] and out.fixes == []
    # The reference comes from the database too (a restarted worker).
    p.set_newest({truck.device_id: NOW})
    out = p.process(
        [_message(truck.device_id, 3, [_moved(good[0], t=NOW - timedelta(days=7, seconds=1))])],
        now=NOW,
    )
    assert [f.reason for f in out.filtered] == ["stale"]


def test_find_jumps_agrees_with_the_gps_jump_rule_fix_by_fix() -> None:
    rng = random.Random(11)
    for _ in range(60):
        groups, views, lasts = [], [], []
        for g in range(3):
            # The last good fix of an earlier batch, if any: near, jumped from, or newer.
            lasts.append(
                rng.choice(
                    [
                        None,
                        FixView(NOW - timedelta(seconds=10), 5.0 + g, 100.0, None, None, None),
                        FixView(NOW - timedelta(seconds=10), 5.3 + g, 100.0, None, None, None),
                        FixView(NOW + timedelta(seconds=30), 5.0 + g, 100.0, None, None, None),
                    ]
                )
            )
            lat, lon, t = 5.0 + g, 100.0, NOW
            fixes = []
            for _ in range(rng.randint(1, 40)):
                t += timedelta(seconds=rng.choice([0, 5, 10, 10, 10, 600]))
                lat += rng.gauss(0, 0.0005)
                jumped = rng.random() < 0.15
                fixes.append(FixView(t, lat + (0.3 if jumped else 0.0), lon, None, None, None))
            if rng.random() < 0.3:  # a late fix among them
                fixes.insert(rng.randrange(len(fixes)), fixes[0]._replace(lat=lat + 1))
                fixes.sort(key=lambda f: f.time)
            groups.append(fixes)
            views += fixes
        ctx = [TransitContext(f"M{g}", f"D{g}", frozenset(), frozenset()) for g in range(3)]
        # The rule, fix by fix.
        expected, want = set(), []
        i = 0
        for g, fixes in enumerate(groups):
            state = MovementState(last=lasts[g])
            for f in fixes:
                found = [
                    a
                    for a in observe_fix(TransitRules(ctx[g]).thresholds, state, ctx[g], f)
                    if a.type is AlertType.GPS_JUMP
                ]
                if found:
                    expected.add(i)
                    want += [(a.action, a.key, a.time) for a in found]
                i += 1
        # The filter, over the batch.
        rules = [
            TransitRules(ctx=c, movement=MovementState(last=r))
            for c, r in zip(ctx, lasts, strict=True)
        ]
        starts = np.cumsum([0, *[len(f) for f in groups[:-1]]]).astype(np.int64)
        jumps, events = find_jumps(
            np.array([v.lon for v in views]),
            np.array([v.lat for v in views]),
            np.array([v.time.timestamp() for v in views]),
            [v.time for v in views],
            starts,
            rules,
        )
        assert set(jumps) == expected
        assert [(a.action, a.key, a.time) for a in events] == want


def test_a_quiet_batch_has_no_jump_and_touches_no_state() -> None:
    ctx = TransitContext("M", "D", frozenset(), frozenset())
    rules = [TransitRules(ctx=ctx)]
    n = 100
    secs = NOW.timestamp() + 10.0 * np.arange(n)
    jumps, events = find_jumps(
        np.full(n, 100.0) + 1e-4 * np.arange(n),
        np.full(n, 5.0),
        secs,
        [NOW + timedelta(seconds=10 * k) for k in range(n)],
        np.array([0], dtype=np.int64),
        rules,
    )
    assert (jumps, events) == ({}, []) and rules[0].movement.open_keys == set()


def test_the_wire_carries_an_out_of_range_fix_to_the_filters() -> None:
    body = {"v": 1, "seq": 1, "fixes": [{"t": NOW.isoformat(), "lat": 91.5, "lon": 200}]}
    _, msg = wire.decode(wire.topic_for(DEV, "telemetry"), json.dumps(body).encode())
    assert _reasons(wire.fixes_of(DEV, msg)) == ["out_of_range"]


def test_a_battery_reading_beside_a_future_fix_is_dated_now(under_way) -> None:
    p, truck = under_way
    (fix,) = _drive(truck, 1, NOW)
    body = wire.TelemetryV1(
        v=1, seq=1, fixes=[_moved(fix, t=NOW + timedelta(days=365))], battery_pct=5.0
    )
    out = p.process(
        [RawMessage(wire.topic_for(truck.device_id, "telemetry"), wire.encode(body))], now=NOW
    )
    assert [f.reason for f in out.filtered] == ["future"]
    assert [(a.type, a.time) for a in out.alerts] == [(AlertType.LOW_BATTERY, NOW)]
