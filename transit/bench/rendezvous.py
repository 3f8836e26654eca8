"""``bench rendezvous``: the transshipment rule with a spatial index against an
all-pairs join, at 1,000, 10,000 and 50,000 concurrent trucks.

One fleet per size, spread over the bounding box of the bundled ACTS corridor network:
a share of the trucks stopped (the rest moving at 30 to 90 km/h), planted pairs stopped
5 to 30 m apart outside any zone, and trucks queueing together inside office zones
(found by the join, left out by the zones). Every truck reports once a window
(``window_s``, 150 s); windows go on until the planted pairs are reported (5 minutes).
The same windows go through three detectors that differ only in their join: the grid
(the default), Shapely's STRtree, and every pair's distance (numpy, by blocks). Per
window: the whole ``feed`` (newest fixes, join, zones, episodes) of each, the median
over the windows; on the last window's stopped trucks, the join alone (best of three).
When the all-pairs join would compute more than ``all_pairs_max`` distances, it is run
on a sample of rows and its time scaled by the pairs (said in ``all_pairs``), and the
check that both find the same pairs is not made (``same_pairs`` None).
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.rules.movement import Thresholds
from transit.rules.pairs import JOINS, M_PER_DEG, all_pairs
from transit.rules.rendezvous import Positions, RendezvousDetector, RendezvousSettings

SIZES = (1_000, 10_000, 50_000)
T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
METHODS = ("grid", "strtree", "all")
DISTANCE_M = RendezvousSettings().distance_m
STOP_KMH = Thresholds().stop_speed_kmh


def _offset(
    lons: NDArray[np.float64], lats: NDArray[np.float64], metres: NDArray[np.float64], rng: Any
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points ``metres`` away from these, in random directions."""
    heading = rng.uniform(0, 2 * math.pi, len(lons))
    dlat = metres * np.cos(heading) / M_PER_DEG
    dlon = metres * np.sin(heading) / (M_PER_DEG * np.cos(np.radians(lats)))
    return lons + dlon, lats + dlat


class Fleet:
    """The synthetic fleet and its windows (see the module's docstring)."""

    def __init__(self, trucks: int, stopped_share: float, engine: GeofenceEngine, seed: int):
        rng = self.rng = np.random.default_rng(seed)
        corridors, offices = load_geojson(acts_network())
        x0, y0, x1, y1 = shapely.total_bounds([c.area for c in corridors])
        n = trucks
        self.devices = [f"TRK{k:06d}" for k in range(n)]
        self.mrns: list[str | None] = [f"26XX{k:012d}" for k in range(n)]
        self.lons, self.lats = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        self.stopped = rng.random(n) < stopped_share
        self.planted = max(3, n // 500)
        lead = np.arange(0, 2 * self.planted, 2)
        # Planted pairs outside every zone; their second truck 5 to 30 m from the first.
        while (zoned := engine.zones_of(self.lons[lead], self.lats[lead]) >= 0).any():
            self.lons[lead[zoned]] = rng.uniform(x0, x1, int(zoned.sum()))
        self.lons[lead + 1], self.lats[lead + 1] = _offset(
            self.lons[lead], self.lats[lead], rng.uniform(5, 30, self.planted), rng
        )
        self.stopped[: 2 * self.planted] = True
        self.pairs = {(self.devices[k], self.devices[k + 1]) for k in lead.tolist()}
        # Trucks queueing at the offices, a few metres apart, inside their zones.
        queue = np.arange(2 * self.planted, 2 * self.planted + max(4, n // 200))
        office = queue % len(offices)
        self.lons[queue], self.lats[queue] = _offset(
            np.asarray([offices[k].lon for k in office]),
            np.asarray([offices[k].lat for k in office]),
            rng.uniform(0, 40, len(queue)),
            rng,
        )
        self.stopped[queue] = True
        self.heading = rng.uniform(0, 2 * math.pi, n)
        self.speeds = np.where(self.stopped, rng.uniform(0, 3, n), rng.uniform(30, 90, n))

    def window(self, w: int, window_s: float) -> Positions:
        """Every truck's fix at window ``w``: the moving ones driven on, the stopped ones
        with GPS noise of a few metres."""
        n = len(self.devices)
        if w:
            step = np.where(self.stopped, 0.0, self.speeds / 3.6 * window_s)
            self.lats = self.lats + step * np.cos(self.heading) / M_PER_DEG
            self.lons = self.lons + step * np.sin(self.heading) / (
                M_PER_DEG * np.cos(np.radians(self.lats))
            )
        noise = np.where(self.stopped, 3.0, 10.0) / M_PER_DEG
        lons = self.lons + self.rng.normal(0, 1, n) * noise
        lats = self.lats + self.rng.normal(0, 1, n) * noise
        at = (T0 + timedelta(seconds=w * window_s)).timestamp()
        return Positions(
            self.devices, self.mrns, lons, lats, self.speeds.copy(), np.full(n, at), STOP_KMH
        )


def _time_join(
    method: str, lons: NDArray[np.float64], lats: NDArray[np.float64], cap: float
) -> tuple[float, str]:
    """Seconds of one join over these points (best of three; all-pairs once, or on a
    sample of rows scaled up past ``cap`` distances), and how it was had."""
    n = len(lons)
    total = n * (n - 1) / 2
    if method == "all" and total > cap:
        rows = max(1, int(cap / 10 / max(n, 1)))
        sampled = rows * n - rows * (rows + 1) / 2
        t0 = time.perf_counter()
        all_pairs(lons, lats, DISTANCE_M, rows=rows)
        took = time.perf_counter() - t0
        return took * total / sampled, f"extrapolated from {rows} of {n} rows"
    best = math.inf
    for _ in range(1 if method == "all" else 3):
        t0 = time.perf_counter()
        JOINS[method](lons, lats, DISTANCE_M)
        best = min(best, time.perf_counter() - t0)
    return best, "measured"


def run(
    trucks: int,
    *,
    stopped_share: float = 0.3,
    window_s: float = 150.0,
    all_pairs_max: float = 2e8,
    seed: int = 7,
) -> dict[str, Any]:
    """One size of the benchmark; returns its figures."""
    _, offices = load_geojson(acts_network())
    engine = GeofenceEngine([], offices)
    fleet = Fleet(trucks, stopped_share, engine, seed)
    stopped = int(fleet.stopped.sum())
    full = stopped * (stopped - 1) / 2 <= all_pairs_max
    detectors = {
        m: RendezvousDetector(zones=engine.zones_of, join=m) for m in METHODS if m != "all" or full
    }
    feed_s: dict[str, list[float]] = {m: [] for m in detectors}
    opened: dict[str, set[tuple[str, str]]] = {m: set() for m in detectors}
    windows = 0
    last: Positions | None = None
    while windows * window_s <= 300.0 + window_s:  # past the 5 minutes, one window more
        positions = last = fleet.window(windows, window_s)
        now = datetime.fromtimestamp(float(positions.seconds[0]), UTC)
        for m, det in detectors.items():
            t0 = time.perf_counter()
            found = det.feed(positions, now)
            feed_s[m].append(time.perf_counter() - t0)
            opened[m] |= {(r.trucks[0].device_id, r.trucks[1].device_id) for r in found.opened}
        windows += 1
    assert last is not None
    sel = last.speeds <= STOP_KMH
    lons, lats = last.lons[sel], last.lats[sel]
    join_s, how = {}, {}
    for m in METHODS:
        join_s[m], how[m] = _time_join(m, lons, lats, all_pairs_max)
    window_ms = {m: 1e3 * statistics.median(v) for m, v in feed_s.items()}
    if not full:  # the grid's window with the all-pairs join in place of its own
        window_ms["all"] = window_ms["grid"] + 1e3 * (join_s["all"] - join_s["grid"])
    same_pairs = None
    if full:
        g, a = JOINS["grid"](lons, lats, DISTANCE_M), JOINS["all"](lons, lats, DISTANCE_M)
        s = JOINS["strtree"](lons, lats, DISTANCE_M)
        same_pairs = all(np.array_equal(g[k], a[k]) and np.array_equal(s[k], a[k]) for k in (0, 1))
    return {
        "trucks": trucks,
        "stopped": stopped,
        "windows": windows,
        "planted_pairs": fleet.planted,
        "window_ms_grid": round(window_ms["grid"], 2),
        "window_ms_strtree": round(window_ms["strtree"], 2),
        "window_ms_all_pairs": round(window_ms["all"], 2),
        "ratio_window_all_pairs_vs_grid": round(window_ms["all"] / window_ms["grid"], 1),
        "join_ms_grid": round(1e3 * join_s["grid"], 2),
        "join_ms_strtree": round(1e3 * join_s["strtree"], 2),
        "join_ms_all_pairs": round(1e3 * join_s["all"], 2),
        "ratio_join_all_pairs_vs_grid": round(join_s["all"] / join_s["grid"], 1),
        "ratio_join_strtree_vs_grid": round(join_s["strtree"] / join_s["grid"], 2),
        "all_pairs": how["all"],
        "same_pairs": same_pairs,
        "same_events": opened["all"] == opened["grid"] == opened["strtree"] if full else None,
        "events": len(opened["grid"]),
        "planted_found": len(fleet.pairs & opened["grid"]),
        "other_events": len(opened["grid"] - fleet.pairs),
    }


def run_sizes(sizes: tuple[int, ...] = SIZES, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Every size, smallest first."""
    return {str(n): run(n, **kwargs) for n in sizes}


def report(results: dict[str, dict[str, Any]]) -> str:
    """The figures as a table, one column per size."""
    keys = list(next(iter(results.values())))
    lines = [f"{'':32}" + "".join(f"{n:>26}" for n in results)]
    for k in keys:
        lines.append(f"{k:32}" + "".join(f"{r[k]!s:>26}" for r in results.values()))
    return "\n".join(lines)
