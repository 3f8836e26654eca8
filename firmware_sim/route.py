"""Walking a route: the position at a distance along a polyline, in metres."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

EARTH_R = 6_371_008.8


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lat2 = math.radians(a[1]), math.radians(b[1])
    dlat, dlon = lat2 - lat1, math.radians(b[0] - a[0])
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_R * math.asin(math.sqrt(h))


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """A point moved by metres east and north (small offsets)."""
    dlat = north_m / EARTH_R
    dlon = east_m / (EARTH_R * math.cos(math.radians(lat)))
    return lon + math.degrees(dlon), lat + math.degrees(dlat)


@dataclass
class Route:
    """A polyline of (lon, lat) waypoints with cumulative distances."""

    points: list[tuple[float, float]]

    def __post_init__(self) -> None:
        self.cum = [0.0]
        for a, b in zip(self.points, self.points[1:], strict=False):
            self.cum.append(self.cum[-1] + _dist(a, b))

    @property
    def length_m(self) -> float:
        """Total length in metres."""
        return self.cum[-1]

    def at(self, s: float) -> tuple[float, float, float]:
        """(lon, lat, heading in degrees) at ``s`` metres along the route."""
        s = min(max(s, 0.0), self.length_m)
        i = min(bisect.bisect_right(self.cum, s) - 1, len(self.points) - 2)
        a, b = self.points[i], self.points[i + 1]
        seg = self.cum[i + 1] - self.cum[i]
        f = (s - self.cum[i]) / seg if seg > 0 else 0.0
        lon = a[0] + (b[0] - a[0]) * f
        lat = a[1] + (b[1] - a[1]) * f
        east = math.radians(b[0] - a[0]) * math.cos(math.radians(lat))
        north = math.radians(b[1] - a[1])
        heading = (math.degrees(math.atan2(east, north)) + 360) % 360
        return lon, lat, heading
