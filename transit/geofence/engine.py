"""The vectorised geofence engine: a batch of fixes against every active corridor and zone.

Each corridor is cut, once, along the country borders into pieces (its segments tagged
by country, found from the borders dataset, not declared), plus the part over water
that belongs to no country. A batch's fixes are grouped by their transit's corridor;
most fixes are settled by a row index (below) in a handful of numpy operations; the
rest meet their corridor's prepared pieces in one ``contains_xy`` call per piece, which
says at once whether a fix is inside and in which country. Only the few fixes outside
their corridor get a distance to the route and a country lookup; only slow fixes (a
truck stopping) are matched against the office and parking zones, through an STRtree.
No per-point Python loop.

The row index. Shapely's prepared ``contains_xy`` costs about 0.1 us a point: for a
fleet that is the whole budget. Most fixes lie near the route's centre line, so the
engine cuts the plane into rows of ``ROW_DEG`` of latitude and stores, per corridor and
row, one longitude interval every point of which lies within ``SAFE`` of the half-width
of the route (bounded from the route's segments clipped to the row: a point there is at
most ``sqrt(margin^2 + row height^2)`` from one of them) and inside one country. A fix
in its row's interval is inside, with that row's country, for two gathers and two
comparisons; any other fix gets the exact test. Rows where a border or coastline comes
near the interval have no interval. ``tests/test_engine.py`` checks the index against
the exact test on every fix of a large batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from transit.geofence.borders import Borders
from transit.geofence.corridor import Corridor, Office, local_projection, reproject

SLOW_KMH = 5.0  # a fix at or under this speed is a stop: its zone is looked up
ROW_DEG = 0.001  # height of a row of the index, degrees of latitude (about 111 m)
SAFE = 0.9  # the index's intervals keep within this share of the half-width
M_PER_DEG_LAT = 111_700.0  # an upper bound of a degree of latitude, metres
M_PER_DEG_LON = 111_320.0  # a degree of longitude at the equator, metres


@dataclass(frozen=True)
class Piece:
    """The part of a corridor inside one country (``country`` None: over water)."""

    country: str | None
    area: Any


@dataclass
class Checked:
    """What the engine says of each fix of a batch, as plain values: what reads it
    (the rules, ingest) never calls back into the engine.

    Countries and zones come as small integers (-1: none) into ``country_codes`` and
    ``zone_refs``; ``country`` and ``zone`` give them as strings (or None)."""

    inside: NDArray[np.bool_]
    country_id: NDArray[np.int16]
    zone_id: NDArray[np.int32]  # office for a slow fix inside a zone
    country_codes: list[str]
    zone_refs: list[str]
    # metres from each fix to its corridor's route (0 inside, or without a corridor)
    distance_m: NDArray[np.float64]

    @property
    def country(self) -> NDArray[Any]:
        """Alpha-2 code of each fix's country, or None."""
        return np.asarray([*self.country_codes, None], dtype=object)[self.country_id]

    @property
    def zone(self) -> NDArray[Any]:
        """Office reference of the zone each slow fix is in, or None."""
        return np.asarray([*self.zone_refs, None], dtype=object)[self.zone_id]

    def distance_of(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        """Metres from each of these fixes to its corridor's route (0 inside)."""
        return self.distance_m[idx]


def cut_by_country(
    corridor: Corridor, borders: Borders | None, edges: list[Any] | None = None
) -> list[Piece]:
    """The corridor's area split by country: its segments tagged from real borders.

    ``edges``, when given, receives the border and coast lines inside the corridor."""
    if borders is None:
        return [Piece(None, corridor.area)]
    pieces = []
    covered = []
    for code, poly in zip(borders.codes, borders.polygons, strict=True):
        if not shapely.intersects(corridor.area, poly):
            continue
        part = shapely.intersection(corridor.area, poly)
        if not part.is_empty:
            shapely.prepare(part)
            pieces.append(Piece(code, part))
            covered.append(part)
            if edges is not None:
                edges.append(shapely.intersection(corridor.area, shapely.boundary(poly)))
    rest = (
        shapely.difference(corridor.area, shapely.union_all(covered)) if covered else corridor.area
    )
    if not rest.is_empty:
        shapely.prepare(rest)
        pieces.append(Piece(None, rest))
    # The longest piece first: most fixes are found by the first test.
    return sorted(pieces, key=lambda p: -float(shapely.area(p.area)))


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


def row_intervals(corridor: Corridor, pieces: list[Piece], edges: list[Any]) -> RowIntervals:
    """Build a corridor's row index (see the module's docstring)."""
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
        hit = shapely.contains_xy(p.area, mid_x, mid_y) & ~found
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


def office_zone(office: Office) -> Any:
    """An office's circular geofence as a polygon in longitude/latitude."""
    _, inv = local_projection(office.lon, office.lat)
    return reproject(shapely.Point(0, 0).buffer(office.radius_m, quad_segs=16), inv)


class GeofenceEngine:
    """Corridors (cut by country), zones and borders, ready for batches of fixes."""

    def __init__(
        self, corridors: list[Corridor], offices: list[Office], borders: Borders | None = None
    ) -> None:
        for c in corridors:
            c.prepare()
        self.corridors = {c.id: c for c in corridors}
        self.ids = [c.id for c in corridors]
        self.index = {cid: i for i, cid in enumerate(self.ids)}
        self.borders = borders
        self.country_codes: list[str] = sorted(set(borders.codes)) if borders else []
        code_id = {c: i for i, c in enumerate(self.country_codes)}
        self.pieces: dict[str, list[Piece]] = {}
        self.piece_country: dict[str, NDArray[np.int16]] = {}
        rows = []
        for c in corridors:
            edges: list[Any] = []
            self.pieces[c.id] = cut_by_country(c, borders, edges)
            self.piece_country[c.id] = np.asarray(
                [code_id.get(p.country, -1) if p.country else -1 for p in self.pieces[c.id]],
                dtype=np.int16,
            )
            rows.append(row_intervals(c, self.pieces[c.id], edges))
        # The row indexes of all corridors, end to end (see the module's docstring).
        # Row k of the whole belongs to corridor owner[k]; a fix of corridor c in
        # latitude row r looks at row base[c] + r.
        counts = np.asarray([len(r.lo) for r in rows], dtype=np.int64)
        offset = np.cumsum(counts) - counts
        self.row_base = offset - np.asarray([r.row0 for r in rows], dtype=np.int64)
        self.row_owner = np.repeat(np.arange(len(rows)), counts)
        both = [
            (r.lo, r.hi, self.piece_country[c.id][r.piece])
            for c, r in zip(corridors, rows, strict=True)
        ]
        self.slots = [
            tuple(
                np.concatenate([b[part][:, slot] for b in both]) if both else np.zeros(0)
                for part in range(3)
            )
            for slot in range(SLOTS)
        ]
        # Pieces as a table (corridor, piece) for the exact test; None pads short rows
        # (contains_xy of None is False).
        self.max_pieces = max((len(p) for p in self.pieces.values()), default=0)
        self.piece_table = np.full((len(corridors), self.max_pieces), None, dtype=object)
        self.piece_code = np.full((len(corridors), self.max_pieces), -1, dtype=np.int16)
        for i, c in enumerate(corridors):
            for j, p in enumerate(self.pieces[c.id]):
                self.piece_table[i, j] = p.area
                self.piece_code[i, j] = self.piece_country[c.id][j]
        self.zone_refs = [o.ref for o in offices]
        # Parking zones: a stop there is permitted to any transit (a truck at another
        # corridor's parking is off its own corridor, which is an alert of its own).
        self.parkings = frozenset(o.ref for o in offices if "parking" in o.roles)
        self.zones = np.asarray([office_zone(o) for o in offices], dtype=object)
        shapely.prepare(self.zones)
        self.zone_tree = shapely.STRtree(self.zones) if len(self.zones) else None

    def zone_at(self, lon: float, lat: float) -> str | None:
        """The office whose zone holds one point (a seal event's position), if any."""
        if self.zone_tree is None:
            return None
        for k in self.zone_tree.query(shapely.Point(lon, lat)):
            if shapely.contains_xy(self.zones[k], lon, lat):
                return self.zone_refs[int(k)]
        return None

    def countries_of(self, corridor_id: str) -> list[str]:
        """The countries a corridor crosses, from the borders."""
        return [p.country for p in self.pieces.get(corridor_id, []) if p.country]

    def indices(self, corridor_ids: list[str]) -> NDArray[np.int64]:
        """Corridor ids as the engine's integer indices (-1: no such corridor)."""
        return np.fromiter(
            (self.index.get(c, -1) for c in corridor_ids), np.int64, len(corridor_ids)
        )

    def country_ids(self, codes: Iterable[str]) -> set[int]:
        """Alpha-2 codes as the integers :class:`Checked` uses."""
        return {self.country_codes.index(c) for c in codes if c in self.country_codes}

    def check(
        self,
        lons: NDArray[np.float64],
        lats: NDArray[np.float64],
        corridors: NDArray[np.int64],
        speeds_kmh: NDArray[np.float64] | None = None,
    ) -> Checked:
        """Inside or outside its corridor, distance, country and zone, for every fix.

        ``corridors`` holds each fix's corridor as an index from :meth:`indices`."""
        n = len(lons)
        country = np.full(n, -1, dtype=np.int16)
        known = corridors >= 0
        inside = np.zeros(n, dtype=bool)
        if len(self.ids) and n:
            # The row index settles most fixes at once: one interval, then the second
            # for the few the first leaves.
            c = corridors if known.all() else np.where(known, corridors, 0)
            k = self.row_base[c] + np.floor(lats / ROW_DEG).astype(np.int64)
            np.clip(k, 0, len(self.row_owner) - 1, out=k)
            valid = known & (self.row_owner[k] == c)
            lo, hi, code = self.slots[0]
            inside = valid & (lons >= lo[k]) & (lons <= hi[k])
            country = np.where(inside, code[k], np.int16(-1)).astype(np.int16)
            todo = np.flatnonzero(valid & ~inside)
            for lo, hi, code in self.slots[1:]:
                kk = k[todo]
                x = lons[todo]
                hit = (x >= lo[kk]) & (x <= hi[kk])
                inside[todo[hit]] = True
                country[todo[hit]] = code[kk[hit]]
                todo = todo[~hit]
        rest = np.flatnonzero(known & ~inside)
        if rest.size:
            # The exact test: each fix against its corridor's pieces in turn, one
            # vectorised call per round over all corridors.
            left = rest
            for piece in range(self.max_pieces):
                geoms = self.piece_table[corridors[left], piece]
                hit = shapely.contains_xy(geoms, lons[left], lats[left])
                found = left[hit]
                inside[found] = True
                country[found] = self.piece_code[corridors[found], piece]
                left = left[~hit]
                if not left.size:
                    break
        outside = np.flatnonzero(~inside)
        if outside.size and self.borders is not None:
            names = self.borders.country_of(lons[outside], lats[outside])
            lookup = {c: i for i, c in enumerate(self.country_codes)}
            country[outside] = [lookup.get(x, -1) if x else -1 for x in names]
        zone = np.full(n, -1, dtype=np.int32)
        if self.zone_tree is not None and speeds_kmh is not None:
            slow = np.flatnonzero(np.nan_to_num(speeds_kmh, nan=0.0) <= SLOW_KMH)
            if slow.size:
                pt, zi = self.zone_tree.query(shapely.points(lons[slow], lats[slow]))
                for z in np.unique(zi):
                    cand = slow[pt[zi == z]]
                    hit = shapely.contains_xy(self.zones[z], lons[cand], lats[cand])
                    zone[cand[hit]] = z
        # The fixes outside their corridor (few) get their distance to its route.
        distance = np.zeros(n, dtype=np.float64)
        away = np.flatnonzero(known & ~inside)
        for c in np.unique(corridors[away]).tolist():
            sel = away[corridors[away] == c]
            distance[sel] = self.corridors[self.ids[c]].distance_m(lons[sel], lats[sel])
        return Checked(inside, country, zone, self.country_codes, self.zone_refs, distance)
