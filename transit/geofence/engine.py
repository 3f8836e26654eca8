"""The vectorised geofence engine: a batch of fixes against every active corridor and zone.

Each corridor is cut, once, along the country borders into pieces (its segments tagged
by country, found from the borders dataset, not declared), plus the part over water
that belongs to no country. A batch's fixes are grouped by their transit's corridor;
each group meets its corridor's prepared pieces in one ``contains_xy`` call per piece,
which says at once whether a fix is inside and in which country. Only the few fixes
outside their corridor get a distance to the route and a country lookup; only slow
fixes (a truck stopping) are matched against the office and parking zones, through an
STRtree. No per-point Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from transit.geofence.borders import Borders
from transit.geofence.corridor import Corridor, Office, local_projection, reproject

SLOW_KMH = 5.0  # a fix at or under this speed is a stop: its zone is looked up


@dataclass(frozen=True)
class Piece:
    """The part of a corridor inside one country (``country`` None: over water)."""

    country: str | None
    area: Any


@dataclass
class Checked:
    """What the engine says of each fix of a batch."""

    inside: NDArray[np.bool_]
    distance_m: NDArray[np.float64]  # 0 inside the corridor
    country: NDArray[Any]  # alpha-2 code or None
    zone: NDArray[Any]  # office reference for a slow fix inside a zone, else None


def cut_by_country(corridor: Corridor, borders: Borders | None) -> list[Piece]:
    """The corridor's area split by country: its segments tagged from real borders."""
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
        self.pieces = {c.id: cut_by_country(c, borders) for c in corridors}
        self.ids = [c.id for c in corridors]
        self.index = {cid: i for i, cid in enumerate(self.ids)}
        self.borders = borders
        self.zone_refs = [o.ref for o in offices]
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
        inside = np.zeros(n, dtype=bool)
        distance = np.zeros(n, dtype=np.float64)
        country = np.full(n, None, dtype=object)
        order = np.argsort(corridors, kind="stable")
        keys = corridors[order]
        cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        for idx in np.split(order, cuts):
            if idx.size == 0 or corridors[idx[0]] < 0:
                continue
            cid = self.ids[int(corridors[idx[0]])]
            pieces = self.pieces[cid]
            left = idx
            for piece in pieces:
                hit = shapely.contains_xy(piece.area, lons[left], lats[left])
                found = left[hit]
                inside[found] = True
                country[found] = piece.country
                left = left[~hit]
                if left.size == 0:
                    break
            if left.size:
                distance[left] = self.corridors[cid].distance_m(lons[left], lats[left])
        outside = np.flatnonzero(~inside)
        if outside.size and self.borders is not None:
            country[outside] = self.borders.country_of(lons[outside], lats[outside])
        zone = np.full(n, None, dtype=object)
        if self.zone_tree is not None and speeds_kmh is not None:
            slow = np.flatnonzero(np.nan_to_num(speeds_kmh, nan=0.0) <= SLOW_KMH)
            if slow.size:
                pt, zi = self.zone_tree.query(shapely.points(lons[slow], lats[slow]))
                for k in np.unique(zi):
                    cand = slow[pt[zi == k]]
                    hit = shapely.contains_xy(self.zones[k], lons[cand], lats[cand])
                    zone[cand[hit]] = self.zone_refs[k]
        return Checked(inside=inside, distance_m=distance, country=country, zone=zone)
