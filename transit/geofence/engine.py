"""The vectorised geofence engine: a batch of fixes against every active corridor and zone.

Each corridor is cut, once, along the country borders into pieces (its segments tagged
by country, found from the borders dataset, not declared), plus the part over water
that belongs to no country. A batch's fixes are grouped by their transit's corridor;
most fixes are settled by a row index (:mod:`transit.geofence.rows`) in a handful of
numpy operations; the rest meet their corridor's prepared pieces in one ``contains_xy``
call per piece, which says at once whether a fix is inside and in which country. Only
the few fixes outside their corridor get a country lookup, and a distance to the route
when a rule asks for it (an alert's evidence: :meth:`Checked.distance_of`);
only slow fixes (a truck stopping: at or under its transit's stop speed, which the
caller gives from the rules' thresholds) are matched against the office and parking
zones, through an STRtree. No per-point Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from transit.geofence.borders import Borders
from transit.geofence.corridor import Corridor, Office, local_projection, reproject
from transit.geofence.rows import ROW_DEG, SLOTS, row_intervals


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
    # What a fix's distance to its route is measured from, when a rule asks
    # (:meth:`distance_of`): the fixes, their corridor indices, the corridors as data.
    lons: NDArray[np.float64]
    lats: NDArray[np.float64]
    corridor_idx: NDArray[np.int64]
    routes: Sequence[Corridor]

    @property
    def country(self) -> NDArray[Any]:
        """Alpha-2 code of each fix's country, or None."""
        return np.asarray([*self.country_codes, None], dtype=object)[self.country_id]

    @property
    def zone(self) -> NDArray[Any]:
        """Office reference of the zone each slow fix is in, or None."""
        return np.asarray([*self.zone_refs, None], dtype=object)[self.zone_id]

    def distance_of(self, idx: NDArray[np.int64]) -> NDArray[np.float64]:
        """Metres from each of these fixes to its corridor's route (0 inside, or without
        a corridor). Measured here, for the few fixes a rule asks about (an alert's
        evidence), not for every fix outside."""
        out = np.zeros(len(idx), dtype=np.float64)
        corr = self.corridor_idx[idx]
        away = np.flatnonzero((corr >= 0) & ~self.inside[idx])
        for c in np.unique(corr[away]).tolist():
            sel = away[corr[away] == c]
            out[sel] = self.routes[c].distance_m(self.lons[idx[sel]], self.lats[idx[sel]])
        return out


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
        self.routes = list(corridors)  # by index, as Checked measures distances on them
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
            rows.append(row_intervals(c, [p.area for p in self.pieces[c.id]], edges))
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

    def zones_of(self, lons: NDArray[np.float64], lats: NDArray[np.float64]) -> NDArray[np.int32]:
        """The office or parking zone each point is in, as an index into ``zone_refs``
        (-1: none), whatever its speed."""
        zone = np.full(len(lons), -1, dtype=np.int32)
        if self.zone_tree is None or not len(lons):
            return zone
        pt, zi = self.zone_tree.query(shapely.points(lons, lats))
        for z in np.unique(zi):
            cand = pt[zi == z]
            hit = shapely.contains_xy(self.zones[z], lons[cand], lats[cand])
            zone[cand[hit]] = z
        return zone

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
        stop_kmh: NDArray[np.float64] | float | None = None,
    ) -> Checked:
        """Inside or outside its corridor, distance, country and zone, for every fix.

        ``corridors`` holds each fix's corridor as an index from :meth:`indices`. With
        ``speeds_kmh`` (NaN: none) and ``stop_kmh`` (each fix's stop speed, or one for
        all: ``transit.rules.batch.stop_speeds``), a fix at or under its stop speed, or
        without a speed, gets the office or parking zone it is in; without them, none."""
        if (speeds_kmh is None) != (stop_kmh is None):
            raise TypeError("speeds_kmh and stop_kmh are given together")
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
        if speeds_kmh is not None and stop_kmh is not None:
            slow = np.flatnonzero(np.nan_to_num(speeds_kmh, nan=0.0) <= stop_kmh)
            zone[slow] = self.zones_of(lons[slow], lats[slow])
        return Checked(
            inside,
            country,
            zone,
            self.country_codes,
            self.zone_refs,
            lons,
            lats,
            corridors,
            self.routes,
        )
