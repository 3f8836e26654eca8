"""The batch path of the rules gives exactly what feeding the fixes one by one gives,
and the engine's row index agrees with Shapely's exact test on every fix."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from tests.rules_oracle import deviation_fix
from transit.bench.geofence import bench_rules, make_corridors, make_points
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.rules.batch import observe_batch, stop_speeds
from transit.rules.movement import FixView, observe_fix

T0 = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def world():
    corridors = make_corridors(12, seed=3)
    _, offices = load_geojson(acts_network())
    engine = GeofenceEngine(corridors, offices, load(default_path()))
    lons, lats, cidx, tr, speeds = make_points(corridors, 60_000, 600, seed=3)
    late = _incidents(lons, lats, tr, speeds)
    return corridors, engine, lons, lats, cidx, tr, speeds, late


def _incidents(lons, lats, tr, speeds) -> np.ndarray:
    """Put into the bench's fleet what makes alerts open and clear: trucks that leave
    their corridor and come back, stop too long then drive on, go silent, or jump.
    Returns each fix's delay in seconds (a silence delays the rest of its transit)."""
    rng = np.random.default_rng(11)
    first = np.searchsorted(tr, np.arange(tr.max() + 1))
    last = np.searchsorted(tr, np.arange(tr.max() + 1), side="right")
    late = np.zeros(len(tr))
    picks = rng.permutation(np.flatnonzero(last - first >= 100))
    for k, t in enumerate(picks[:36].tolist()):
        a, b = int(first[t]), int(last[t])
        mid = (a + b) // 2
        if k < 12:  # out about 2 km across the route for 18 fixes, then back
            dx, dy = lons[b - 1] - lons[a], lats[b - 1] - lats[a]
            norm = float(np.hypot(dx, dy)) or 1.0
            off = np.r_[np.arange(1, 6), np.full(8, 5), np.arange(5, 0, -1)] * 0.004
            lons[mid : mid + 18] += -dy / norm * off
            lats[mid : mid + 18] += dx / norm * off
        elif k < 22:  # stopped 16 minutes, then on the move again
            speeds[a + 1 : a + 97] = 0.0
        elif k < 30:  # silent for 150 s
            late[mid:b] += 150.0
        else:  # one fix 5 km off
            lats[mid] += 0.05
    return late


def test_row_index_agrees_with_the_exact_test_on_every_fix(world) -> None:
    corridors, engine, lons, lats, cidx, _, _, _ = world
    got = engine.check(lons, lats, cidx)
    exact = np.zeros(len(lons), dtype=bool)
    for i, c in enumerate(corridors):
        sel = cidx == i
        exact[sel] = shapely.contains_xy(c.area, lons[sel], lats[sel])
    assert (got.inside == exact).all()
    # Countries of fixes inside: the same as the borders say, point by point.
    inside = np.flatnonzero(exact)
    assert list(got.country[inside]) == list(engine.borders.country_of(lons[inside], lats[inside]))
    # The index is doing the work: most fixes never reach the exact test.
    assert len(engine.row_owner) > 0


def _shuffle_some(times: list[datetime], rng: random.Random) -> list[int]:
    """An order of the fixes with some swapped and some repeated (late and duplicate)."""
    order = list(range(len(times)))
    for _ in range(len(order) // 50):
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    for _ in range(len(order) // 100):
        i = rng.randrange(len(order))
        order.insert(i + 1, order[i])
    return order


def _rules(engine, tr, names):
    """The bench's rule state, one transit in seven with thresholds of its own: it
    counts crawling at 70 km/h as a stop and deviates sooner and clears later."""
    rules = bench_rules(engine, tr, names)
    for r in rules[::7]:
        r.thresholds = replace(
            r.thresholds, stop_speed_kmh=75.0, route_debounce_s=30.0, route_clear_s=90.0
        )
    return rules


def _by_batches(engine, rules, lons, lats, cidx, tr, speeds, times, cuts):
    """The alerts of the batch path, the fixes cut into batches at ``cuts``."""
    seconds = np.asarray([t.timestamp() for t in times])
    got = []
    for a, b in itertools.pairwise([0, *cuts, len(lons)]):
        sl = slice(a, b)
        t_sl = tr[sl]
        starts = np.flatnonzero(np.r_[True, t_sl[1:] != t_sl[:-1]])
        group = [rules[int(t_sl[s])] for s in starts]
        stops = stop_speeds(group, starts, len(t_sl))
        sub = engine.check(lons[sl], lats[sl], cidx[sl], speeds[sl], stops)
        got += observe_batch(
            sub, lons[sl], lats[sl], speeds[sl], seconds[sl], times[sl], starts, group
        )
    return got


def _fix_by_fix(engine, rules, lons, lats, cidx, tr, speeds, times):
    """The alerts of the same fixes one by one through the rules as their definitions
    read (the engine's answer for each fix is the same either way)."""
    whole = np.flatnonzero(np.r_[True, tr[1:] != tr[:-1]])
    stop_kmh = stop_speeds([rules[int(tr[s])] for s in whole], whole, len(tr))
    checked = engine.check(lons, lats, cidx, speeds, stop_kmh)
    want = []
    country, zone = checked.country, checked.zone
    for i in range(len(lons)):
        r = rules[int(tr[i])]
        sp = None if np.isnan(speeds[i]) else float(speeds[i])
        view = FixView(times[i], float(lats[i]), float(lons[i]), sp, country[i], zone[i])
        want += observe_fix(r.thresholds, r.movement, r.ctx, view)
        ev = deviation_fix(
            r.thresholds,
            r.deviation,
            r.ctx,
            time=times[i],
            inside=bool(checked.inside[i]),
            lat=float(lats[i]),
            lon=float(lons[i]),
            distance_m=lambda i=i: float(checked.distance_of(np.array([i]))[0]),
        )
        want += [ev] if ev is not None else []
    return want


def _key(events):
    return sorted(
        (e.mrn, e.type.value, e.action, e.key, e.time, round(e.lat or 0, 9)) for e in events
    )


@pytest.mark.parametrize("disorder", [False, True])
def test_batch_gives_the_alerts_of_fix_by_fix(world, disorder: bool) -> None:
    corridors, engine, lons, lats, cidx, tr, speeds, late = world
    names = [corridors[int(c)].id for c in cidx[np.searchsorted(tr, np.arange(tr.max() + 1))]]
    times = [T0 + timedelta(seconds=10 * i + float(late[i])) for i in range(len(lons))]
    if disorder:
        rng = random.Random(5)
        order = np.asarray(_shuffle_some(times, rng))
        # keep fixes grouped by transit, as the pipeline does
        order = order[np.argsort(tr[order], kind="stable")]
        lons, lats, cidx, tr, speeds = (
            lons[order],
            lats[order],
            cidx[order],
            tr[order],
            speeds[order],
        )
        times = [times[i] for i in order]
    world_now = (lons, lats, cidx, tr, speeds, times)

    # In batches of a few hundred fixes, as ingest sees them.
    cuts = list(range(700, len(lons), 700))
    got = _by_batches(engine, _rules(engine, tr, names), *world_now[:5], times, cuts)
    # The same fixes one by one through the rules as their definitions read.
    want = _fix_by_fix(engine, _rules(engine, tr, names), *world_now)

    assert len(want) > 10  # the data has deviations, stops and zones in it
    kinds = {(e.type.value, e.action) for e in want}
    for kind in ("route_deviation", "unauthorized_stop", "signal_lost"):
        assert {(kind, "open"), (kind, "clear")} <= kinds
    assert {("gps_jump", "open"), ("wrong_office", "open")} <= kinds
    assert _key(got) == _key(want)
    dist_got = sorted(e.details.get("distance_m", 0) for e in got)
    dist_want = sorted(e.details.get("distance_m", 0) for e in want)
    assert dist_got == dist_want


def _late_last(times, lats):
    """A quiet batch ends with a late fix; the next opens with a silence."""
    times[13], times[14] = times[14], times[13]
    for i in range(15, len(times)):
        times[i] += timedelta(seconds=150)


def _silence_across(times, lats):
    for i in range(15, len(times)):
        times[i] += timedelta(seconds=150)


def _jump_across(times, lats):
    lats[15] += 0.05


def _same_time_outside(times, lats):
    """A second fix at the time of the one before, far outside, then back."""
    times[15] = times[14]
    lats[15] += 0.05


@pytest.mark.parametrize(
    "incident", [_late_last, _silence_across, _jump_across, _same_time_outside]
)
def test_batch_gives_the_alerts_of_fix_by_fix_where_batches_meet(world, incident) -> None:
    corridors, engine, lons, lats, cidx, tr, _, _ = world
    # A truck on its corridor, 30 fixes 10 s apart, seen in batches of 15.
    first = np.searchsorted(tr, np.arange(tr.max() + 1))
    long = np.flatnonzero(np.diff(np.r_[first, len(tr)]) >= 30)
    a = int(first[long[0]])
    sl = slice(a, a + 30)
    lo, la, ci, sp = lons[sl].copy(), lats[sl].copy(), cidx[sl].copy(), np.full(30, 60.0)
    tr1 = np.zeros(30, dtype=np.int64)
    times = [T0 + timedelta(seconds=10 * i) for i in range(30)]
    incident(times, la)
    names = [corridors[int(ci[0])].id]
    got = _by_batches(engine, _rules(engine, tr1, names), lo, la, ci, tr1, sp, times, [15])
    want = _fix_by_fix(engine, _rules(engine, tr1, names), lo, la, ci, tr1, sp, times)
    assert _key(got) == _key(want)
    if incident is not _same_time_outside:
        assert want  # the incident raised something
