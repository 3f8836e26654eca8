"""The geofence engine's row index: most fixes settled by two gathers and two comparisons.

Shapely's prepared ``contains_xy`` costs about 0.1 us a point: for a fleet that is the
whole budget. Most fixes lie near the route's centre line, so the engine cuts the plane
into rows of ``ROW_DEG`` of latitude and stores, per corridor and row, one longitude
interval every point of which lies within ``SAFE`` of the half-width of the route
(bounded from the route's segments clipped to the row: a point there is at most
``sqrt(margin^2 + row height^2)`` from one of them) and inside one country. A fix in its
row's interval is inside, with that row's country, for two gathers and two comparisons;
any other fix gets the exact test. Rows where a border or coastline comes near the
interval have no interval. ``tests/unit/test_batch_rules.py`` checks the index against the
exact test on every fix of a large batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from transit.geofence.corridor import Corridor

ROW_DEG = 0.001  # height of a row of the index, degrees of latitude (about 111 m)
SAFE = 0.9  # the index's intervals keep within this share of the half-width
M_PER_DEG_LAT = 111_700.0  # an upper bound of a degree of latitude, metres
M_PER_DEG_LON = 111_320.0  # a degree of longitude at the equator, metres
SLOTS = 2  # intervals kept per row (a coast or a hairpin makes a second one)


@dataclass
class RowIntervals:
    """One corridor's row index: rows ``row0 ..`` with up to ``SLOTS`` intervals each
    (arrays of shape (rows, SLOTS); an empty slot has lo > hi) and their pieces."""

    row0: int
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    piece: NDArray[np.int16]  # index into the corridor's pieces


def _top_per_row(
    rows: NDArray[np.int64], lo: NDArray[np.float64], hi: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Of intervals tagged by row, the ``SLOTS`` longest of each row: (indices, rank)."""
    pick = np.lexsort((-(hi - lo), rows))
    r = rows[pick]
    head = np.r_[True, r[1:] != r[:-1]]
    first = np.maximum.accumulate(np.where(head, np.arange(len(r)), 0))
    rank = np.arange(len(r)) - first
    keep = rank < SLOTS
    return pick[keep], rank[keep]


def row_intervals(corridor: Corridor, pieces: Sequence[Any], edges: list[Any]) -> RowIntervals:
    """Build a corridor's row index (see the module's docstring) from its pieces' areas
    (each country's part, as the engine cuts it) and the border and coast lines in it."""
    empty = RowIntervals(
        0, np.full((1, SLOTS), np.inf), np.full((1, SLOTS), -np.inf), np.zeros((1, SLOTS), np.int16)
    )
    half = corridor.width_m / 2
    row_m = ROW_DEG * M_PER_DEG_LAT
    if SAFE * half <= 2 * row_m:
        return empty  # too narrow for rows of this height: every fix is tested exactly
    margin_m = float(np.sqrt((SAFE * half) ** 2 - row_m**2))
    xy = np.asarray(shapely.segmentize(corridor.route, 0.01).coords)
    x0, y0, x1, y1 = xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1]
    r_lo = np.floor(np.minimum(y0, y1) / ROW_DEG).astype(np.int64)
    r_hi = np.floor(np.maximum(y0, y1) / ROW_DEG).astype(np.int64)
    counts = r_hi - r_lo + 1
    seg = np.repeat(np.arange(len(x0)), counts)
    row = r_lo[seg] + np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)
    # Each segment clipped to each row it crosses: its longitude extent there.
    ya, yb = row * ROW_DEG, (row + 1) * ROW_DEG
    dy = (y1 - y0)[seg]
    flat = dy == 0
    safe_dy = np.where(flat, 1.0, dy)
    ta = np.where(flat, 0.0, np.clip((ya - y0[seg]) / safe_dy, 0, 1))
    tb = np.where(flat, 1.0, np.clip((yb - y0[seg]) / safe_dy, 0, 1))
    dx = (x1 - x0)[seg]
    xa, xb = x0[seg] + ta * dx, x0[seg] + tb * dx
    # Longitude margin, with the cosine where it is largest in the row (the safe side).
    cos = np.cos(np.radians(np.minimum(np.abs(ya), np.abs(yb))))
    m_deg = margin_m / (M_PER_DEG_LON * cos)
    a, b = np.minimum(xa, xb) - m_deg, np.maximum(xa, xb) + m_deg
    # Merge overlapping intervals per row; keep each row's longest run.
    order = np.lexsort((a, row))
    row, a, b = row[order], a[order], b[order]
    base = row - row[0]
    run_max = np.maximum.accumulate(b + base * 1000.0) - base * 1000.0
    start = np.ones(len(row), dtype=bool)
    start[1:] = (row[1:] != row[:-1]) | (a[1:] > run_max[:-1])
    first = np.flatnonzero(start)
    run_row, run_lo = row[first], a[first]
    run_hi = np.maximum.reduceat(b, first)
    keep, rank = _top_per_row(run_row, run_lo, run_hi)
    row0 = int(run_row.min())
    n = int(run_row.max()) - row0 + 1
    lo = np.full((n, SLOTS), np.inf)
    hi = np.full((n, SLOTS), -np.inf)
    lo[run_row[keep] - row0, rank] = run_lo[keep]
    hi[run_row[keep] - row0, rank] = run_hi[keep]
    # Where a border or a coast comes near an interval, keep its longest stretch clear of
    # them (every point of such a line is within an eighth of a row of one of its
    # vertices, in this row or the next).
    rows_f, fa, fb = [], [], []
    for line in edges:
        if shapely.is_empty(line):
            continue
        pts = shapely.get_coordinates(shapely.segmentize(line, ROW_DEG / 4))
        r = np.floor(pts[:, 1] / ROW_DEG).astype(np.int64) - row0
        for shift in (-1, 0, 1):
            k = r + shift
            ok = (k >= 0) & (k < n)
            rows_f.append(k[ok])
            fa.append(pts[ok, 0] - ROW_DEG / 4)
            fb.append(pts[ok, 0] + ROW_DEG / 4)
    if rows_f:
        lo, hi = _clear_stretches(
            lo, hi, np.concatenate(rows_f), np.concatenate(fa), np.concatenate(fb)
        )
    # Each interval's piece, from its middle.
    piece = np.zeros((n, SLOTS), dtype=np.int16)
    live_r, live_s = np.nonzero(lo <= hi)
    mid_x = (lo[live_r, live_s] + hi[live_r, live_s]) / 2
    mid_y = (live_r + row0 + 0.5) * ROW_DEG
    found = np.zeros(len(live_r), dtype=bool)
    for k, p in enumerate(pieces):
        hit = shapely.contains_xy(p, mid_x, mid_y) & ~found
        piece[live_r[hit], live_s[hit]] = k
        found |= hit
    lo[live_r[~found], live_s[~found]] = np.inf
    hi[live_r[~found], live_s[~found]] = -np.inf
    return RowIntervals(row0, lo, hi, piece)


def _clear_stretches(
    lo: NDArray[np.float64],
    hi: NDArray[np.float64],
    rows: NDArray[np.int64],
    fa: NDArray[np.float64],
    fb: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each row's longest parts of its intervals outside the forbidden ``[fa, fb]``."""
    hit = np.unique(rows)
    # What lies outside the row's intervals is forbidden too: [-500, a], [b, c], [d, 500]
    # for intervals [a, b] and [c, d] (an empty second one gives [b, b], [b, 500]).
    a0, b0, a1, b1 = lo[hit, 0], hi[hit, 0], lo[hit, 1], hi[hit, 1]
    two = a1 <= b1
    first_lo = np.where(two & (a1 < a0), a1, a0)
    first_hi = np.where(two & (a1 < a0), b1, b0)
    second_lo = np.where(two, np.where(a1 < a0, a0, a1), first_hi)
    second_hi = np.where(two, np.where(a1 < a0, b0, b1), first_hi)
    none = a0 > b0
    first_lo = np.where(none, 500.0, first_lo)
    m = len(hit)
    rows = np.concatenate([rows, hit, hit, hit])
    fa = np.concatenate([fa, np.full(m, -500.0), first_hi, second_hi])
    fb = np.concatenate([fb, first_lo, second_lo, np.full(m, 500.0)])
    order = np.lexsort((fa, rows))
    rows, fa, fb = rows[order], fa[order], fb[order]
    base = (rows - rows[0]).astype(np.float64) * 2000.0  # exact in a double
    reach = np.maximum.accumulate(fb + base) - base  # forbidden up to here, per row
    same = rows[1:] == rows[:-1]
    gap_lo, gap_hi = reach[:-1], fa[1:]
    ok = same & (gap_hi > gap_lo)
    lo, hi = lo.copy(), hi.copy()
    lo[hit], hi[hit] = np.inf, -np.inf
    if ok.any():
        g_row, g_lo, g_hi = rows[1:][ok], gap_lo[ok], gap_hi[ok]
        keep, rank = _top_per_row(g_row, g_lo, g_hi)
        lo[g_row[keep], rank] = g_lo[keep]
        hi[g_row[keep], rank] = g_hi[keep]
    return lo, hi
