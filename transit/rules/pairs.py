"""Which points of a set lie within a distance of each other on the ground: the spatial
join under the rendezvous rule (:mod:`transit.rules.rendezvous`).

Three joins that give exactly the same pairs: ``grid`` (a hash of cells as large as the
distance, joined to their neighbours with sorted keys and ``searchsorted``), ``strtree``
(Shapely's STRtree queried with ``dwithin``, vectorised) and ``all`` (every pair's
distance, by blocks of rows: the oracle the other two are tested and benchmarked
against). The indexes find candidates in degrees, with a reach that cannot miss a pair
(a degree of longitude is shortest at the highest latitude of the set); every candidate
then meets the one exact test, the great-circle distance on the mean Earth sphere (as
the GPS jump rule measures it), from the chord between unit vectors, so all three
decide each pair by the same arithmetic.

A pair is ``(i, j)`` with ``i < j``, indices into the input; the pairs come sorted.
Longitudes are not joined across the antimeridian. Pure: numpy and Shapely only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import shapely
from numpy.typing import NDArray

from transit.rules.movement import EARTH_R

Coords = NDArray[np.float64]
Pairs = tuple[NDArray[np.int64], NDArray[np.int64]]
Join = Callable[[Coords, Coords, float], Pairs]

M_PER_DEG = EARTH_R * math.pi / 180  # a degree of a great circle on that sphere
REACH_MARGIN = 1.01  # the candidates' reach in degrees, a little wide (sin x < x)
BLOCK = 65_536  # pair distances computed at once by the all-pairs join (cache-sized)


def _no_pairs() -> Pairs:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def unit_vectors(lons: Coords, lats: Coords) -> tuple[Coords, Coords, Coords]:
    """Each point as a unit vector from the Earth's centre (x, y, z)."""
    phi, lam = np.radians(lats), np.radians(lons)
    cos = np.cos(phi)
    return cos * np.cos(lam), cos * np.sin(lam), np.sin(phi)


def _chord2(
    xi: Coords, yi: Coords, zi: Coords, xj: Coords, yj: Coords, zj: Coords
) -> NDArray[np.float64]:
    """The squared chord between unit vectors: one formula for every join (broadcast
    by the all-pairs join, flat for the others), so they agree bit for bit. Differences
    of the coordinates, not a dot product: exact to well under a millimetre at 50 m."""
    dx, dy, dz = xj - xi, yj - yi, zj - zi
    return np.asarray(dx * dx + dy * dy + dz * dz, dtype=np.float64)


def _chord2_max(distance_m: float) -> float:
    """The squared chord of an arc of ``distance_m`` on the sphere."""
    return (2 * math.sin(distance_m / EARTH_R / 2)) ** 2


def ground_m(lon_a: Coords, lat_a: Coords, lon_b: Coords, lat_b: Coords) -> NDArray[np.float64]:
    """Metres on the ground (great circle) from each point ``a`` to its point ``b``."""
    chord = np.sqrt(_chord2(*unit_vectors(lon_a, lat_a), *unit_vectors(lon_b, lat_b)))
    return np.asarray(2 * EARTH_R * np.arcsin(np.minimum(chord / 2, 1.0)), dtype=np.float64)


def _exact(
    lons: Coords, lats: Coords, distance_m: float, i: NDArray[np.int64], j: NDArray[np.int64]
) -> Pairs:
    """Of candidate pairs (``i < j``), those within ``distance_m``, sorted."""
    x, y, z = unit_vectors(lons, lats)
    keep = _chord2(x[i], y[i], z[i], x[j], y[j], z[j]) <= _chord2_max(distance_m)
    i, j = i[keep], j[keep]
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64)


def reach_deg(lats: Coords, distance_m: float) -> tuple[float, float]:
    """``(longitude, latitude)`` degrees that no pair within ``distance_m`` can be apart
    by, among points at these latitudes."""
    top = float(np.max(np.abs(lats))) if len(lats) else 0.0
    cos = max(math.cos(math.radians(min(top, 89.999))), 1e-6)
    dlat = REACH_MARGIN * distance_m / M_PER_DEG
    return dlat / cos, dlat


def grid_pairs(lons: Coords, lats: Coords, distance_m: float) -> Pairs:
    """The pairs within ``distance_m``, from a grid of cells ``reach_deg`` wide: each
    cell meets itself and four of its neighbours (the other four meet it)."""
    n = len(lons)
    if n < 2:
        return _no_pairs()
    dlon, dlat = reach_deg(lats, distance_m)
    ix = np.floor(lons / dlon).astype(np.int64)
    iy = np.floor(lats / dlat).astype(np.int64)
    iy -= iy.min() - 1  # rows 1 .. span - 2: a neighbour's row never wraps into a column
    span = int(iy.max()) + 2
    key = ix * span + iy
    order = np.argsort(key, kind="stable")
    sk = key[order]
    here = np.arange(n)
    found_i, found_j = [], []
    for dx, dy in ((0, 0), (0, 1), (1, -1), (1, 0), (1, 1)):
        target = sk + (dx * span + dy)
        lo = np.searchsorted(sk, target, "left")
        hi = np.searchsorted(sk, target, "right")
        if dx == dy == 0:
            lo = np.maximum(lo, here + 1)  # within a cell, each pair once
        count = np.maximum(hi - lo, 0)
        total = int(count.sum())
        if not total:
            continue
        src = np.repeat(here, count)
        pos = np.arange(total) - np.repeat(np.cumsum(count) - count, count) + np.repeat(lo, count)
        a, b = order[src], order[pos]
        found_i.append(np.minimum(a, b))
        found_j.append(np.maximum(a, b))
    if not found_i:
        return _no_pairs()
    return _exact(lons, lats, distance_m, np.concatenate(found_i), np.concatenate(found_j))


def strtree_pairs(lons: Coords, lats: Coords, distance_m: float) -> Pairs:
    """The pairs within ``distance_m``, from Shapely's STRtree over the points, queried
    with all of them at once (``dwithin`` a radius covering the reach)."""
    if len(lons) < 2:
        return _no_pairs()
    radius = max(reach_deg(lats, distance_m))
    points = shapely.points(lons, lats)
    a, b = shapely.STRtree(points).query(points, predicate="dwithin", distance=radius)
    keep = a < b
    return _exact(lons, lats, distance_m, a[keep].astype(np.int64), b[keep].astype(np.int64))


def all_pairs(lons: Coords, lats: Coords, distance_m: float, rows: int | None = None) -> Pairs:
    """Every pair's distance, by blocks of rows (``BLOCK`` distances at a time): the
    oracle. With ``rows``, only the pairs of the first ``rows`` points (a sample whose
    time the benchmark scales up)."""
    n = len(lons)
    x, y, z = unit_vectors(lons, lats)
    c_max = _chord2_max(distance_m)
    step = max(1, BLOCK // max(n, 1))
    found_i, found_j = [], []
    for r0 in range(0, n if rows is None else min(rows, n), step):
        i = np.arange(r0, min(n, r0 + step))[:, None]
        j = np.arange(r0 + 1, n)[None, :]
        c2 = _chord2(x[i], y[i], z[i], x[j], y[j], z[j])
        a, b = np.nonzero((c2 <= c_max) & (j > i))
        found_i.append(a + r0)
        found_j.append(b + r0 + 1)
    if not found_i:
        return _no_pairs()
    i_all, j_all = np.concatenate(found_i), np.concatenate(found_j)
    order = np.lexsort((j_all, i_all))
    return i_all[order].astype(np.int64), j_all[order].astype(np.int64)


JOINS: dict[str, Join] = {"grid": grid_pairs, "strtree": strtree_pairs, "all": all_pairs}
