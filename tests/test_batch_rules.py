"""The batch path of the rules gives exactly what feeding the fixes one by one gives,
and the engine's row index agrees with Shapely's exact test on every fix."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from transit.bench.geofence import bench_rules, make_corridors, make_points
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.rules.batch import observe_batch
from transit.rules.deviation import observe_stretch
from transit.rules.movement import FixView, observe_fix

T0 = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def world():
    corridors = make_corridors(12, seed=3)
    _, offices = load_geojson(acts_network())
    engine = GeofenceEngine(corridors, offices, load(default_path()))
    lons, lats, cidx, tr, speeds = make_points(corridors, 60_000, 600, seed=3)
    return corridors, engine, lons, lats, cidx, tr, speeds


def test_row_index_agrees_with_the_exact_test_on_every_fix(world) -> None:
    corridors, engine, lons, lats, cidx, _, _ = world
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


@pytest.mark.parametrize("disorder", [False, True])
def test_batch_gives_the_alerts_of_fix_by_fix(world, disorder: bool) -> None:
    corridors, engine, lons, lats, cidx, tr, speeds = world
    names = [corridors[int(c)].id for c in cidx[np.searchsorted(tr, np.arange(tr.max() + 1))]]
    times = [T0 + timedelta(seconds=10 * i) for i in range(len(lons))]
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
    seconds = np.asarray([t.timestamp() for t in times])
    checked = engine.check(lons, lats, cidx, speeds)

    # In batches of a few hundred fixes, as ingest sees them.
    batch_rules = bench_rules(engine, tr, names)
    got = []
    for a in range(0, len(lons), 700):
        sl = slice(a, a + 700)
        sub = engine.check(lons[sl], lats[sl], cidx[sl], speeds[sl])
        t_sl = tr[sl]
        starts = np.flatnonzero(np.r_[True, t_sl[1:] != t_sl[:-1]])
        rules = [batch_rules[int(t_sl[s])] for s in starts]
        got += observe_batch(
            sub, lons[sl], lats[sl], speeds[sl], seconds[sl], times[sl], starts, rules
        )

    # The same fixes one by one through the plain rules.
    slow_rules = bench_rules(engine, tr, names)
    want = []
    country, zone = checked.country, checked.zone
    for i in range(len(lons)):
        r = slow_rules[int(tr[i])]
        sp = None if np.isnan(speeds[i]) else float(speeds[i])
        view = FixView(times[i], float(lats[i]), float(lons[i]), sp, country[i], zone[i])
        want += observe_fix(r.thresholds, r.movement, r.ctx, view)
        want += observe_stretch(
            r.rule,
            r.deviation,
            mrn=r.ctx.mrn,
            device_id=r.ctx.device_id,
            times=[times[i]],
            inside=[bool(checked.inside[i])],
            lats=[float(lats[i])],
            lons=[float(lons[i])],
            distance_m=lambda _, i=i: float(checked.distance_of(np.array([i]))[0]),
        )

    def key(events):
        return sorted(
            (e.mrn, e.type.value, e.action, e.key, e.time, round(e.lat or 0, 9)) for e in events
        )

    assert len(want) > 10  # the data has deviations, stops and zones in it
    assert key(got) == key(want)
    dist_got = sorted(e.details.get("distance_m", 0) for e in got)
    dist_want = sorted(e.details.get("distance_m", 0) for e in want)
    assert dist_got == dist_want
