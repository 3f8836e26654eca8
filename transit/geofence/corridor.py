"""Corridors (a route with a width) and offices (a circle around a point).

A corridor is buffered in an azimuthal equidistant projection centred on its own
route, so its width is in true metres; the buffered polygon is then taken back to
longitude/latitude and prepared, so that point checks run on raw GPS coordinates.
Segments are straight in longitude/latitude (RFC 7946), densified before projecting.
Over the 1,300 km Kuala Lumpur–Bangkok route the corridor's edge lies within 0.5 % of
its half-width of where it should (tests/unit/test_corridor.py measures it on every segment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from shapely.geometry import LineString, Point, Polygon, mapping, shape

DENSIFY_DEG = 0.005  # about 550 m: a vertex at least that often along a route
# For distances to the route, a vertex every 5.5 km: the chord of a 5.5 km stretch of a
# straight lon/lat line in the projection is off it by well under a metre.
DISTANCE_DENSIFY_DEG = 0.05


def reproject(geom: Any, transformer: Transformer) -> Any:
    def fn(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[Any, Any]:
        return transformer.transform(x, y)

    return shapely.transform(geom, fn, interleaved=False)


def local_projection(lon0: float, lat0: float) -> tuple[Transformer, Transformer]:
    crs = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m"
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return fwd, inv


@dataclass(frozen=True, eq=False)
class Corridor:
    """A declared route across countries, with its width in metres (full width)."""

    id: str
    name: str
    width_m: float
    route: LineString
    countries: tuple[str, ...]
    area: Polygon
    properties: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def _projection(self) -> tuple[Transformer, Transformer]:
        c = self.route.centroid
        return local_projection(c.x, c.y)

    @cached_property
    def _route_m(self) -> LineString:
        fwd = self._projection[0]
        return reproject(shapely.segmentize(self.route, DISTANCE_DENSIFY_DEG), fwd)

    def prepare(self) -> None:
        """Build the lazily made parts now (before timing-sensitive work)."""
        _ = self._route_m

    def contains(self, lons: NDArray[np.float64], lats: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether each point lies inside the corridor (vectorised)."""
        return np.asarray(shapely.contains_xy(self.area, lons, lats), dtype=bool)

    def distance_m(
        self, lons: NDArray[np.float64], lats: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Distance in metres from each point to the route's centre line (vectorised)."""
        x, y = self._projection[0].transform(lons, lats)
        pts = shapely.points(np.asarray(x), np.asarray(y))
        return np.asarray(shapely.distance(self._route_m, pts), dtype=np.float64)

    def to_feature(self) -> dict[str, Any]:
        """The corridor as a GeoJSON Feature (its route, width and countries)."""
        props = dict(self.properties)
        props.update(kind="corridor", name=self.name, width_m=self.width_m)
        props["countries"] = list(self.countries)
        return {
            "type": "Feature",
            "id": self.id,
            "geometry": mapping(self.route),
            "properties": props,
        }


def build_corridor(
    corridor_id: str,
    name: str,
    coords: list[tuple[float, float]] | list[list[float]],
    width_m: float,
    countries: list[str] | tuple[str, ...],
    properties: dict[str, Any] | None = None,
) -> Corridor:
    """Buffer a route (lon, lat pairs) by half its width in true metres."""
    if width_m <= 0:
        raise ValueError(f"corridor {corridor_id}: width_m must be positive, not {width_m}")
    if len(coords) < 2:
        raise ValueError(f"corridor {corridor_id}: a route needs at least two waypoints")
    route = LineString([(float(c[0]), float(c[1])) for c in coords])
    c = route.centroid
    fwd, inv = local_projection(c.x, c.y)
    # RFC 7946: a segment is straight in longitude/latitude. Densify before projecting,
    # so the buffered corridor follows that line and not a chord of the projection.
    dense = shapely.segmentize(route, DENSIFY_DEG)
    area_m = reproject(dense, fwd).buffer(width_m / 2, quad_segs=8)
    area = reproject(area_m, inv)
    shapely.prepare(area)
    return Corridor(
        id=corridor_id,
        name=name,
        width_m=float(width_m),
        route=route,
        countries=tuple(countries),
        area=area,
        properties=dict(properties or {}),
    )


@dataclass(frozen=True)
class Office:
    """A customs office: 8-character reference, country, roles and a circular geofence."""

    ref: str
    name: str
    country: str
    roles: tuple[str, ...]
    lon: float
    lat: float
    radius_m: float

    def contains(self, lon: float, lat: float) -> bool:
        """Whether a point lies inside the office's geofence."""
        fwd, _ = local_projection(self.lon, self.lat)
        x, y = fwd.transform(lon, lat)
        return bool(Point(x, y).distance(Point(0, 0)) <= self.radius_m)

    def to_feature(self) -> dict[str, Any]:
        """The office as a GeoJSON Feature."""
        return {
            "type": "Feature",
            "id": self.ref,
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
            "properties": {
                "kind": "parking" if "parking" in self.roles else "office",
                "name": self.name,
                "country": self.country,
                "roles": list(self.roles),
                "radius_m": self.radius_m,
            },
        }


def load_geojson(doc: dict[str, Any]) -> tuple[list[Corridor], list[Office]]:
    """Corridors (LineString features), offices and parkings (Point features, with a
    radius) of a FeatureCollection. A parking is a zone where a stop is permitted; it
    is kept with the offices, with the single role ``parking``."""
    if doc.get("type") != "FeatureCollection":
        raise ValueError("expected a GeoJSON FeatureCollection")
    corridors: list[Corridor] = []
    offices: list[Office] = []
    for i, feat in enumerate(doc.get("features", [])):
        props = feat.get("properties") or {}
        kind = props.get("kind")
        fid = feat.get("id") or props.get("id")
        if not fid:
            raise ValueError(f"feature {i}: an id is required")
        geom = shape(feat["geometry"])
        if kind == "corridor":
            if not isinstance(geom, LineString):
                raise ValueError(f"corridor {fid}: geometry must be a LineString")
            extra = {
                k: v for k, v in props.items() if k not in {"kind", "name", "width_m", "countries"}
            }
            corridors.append(
                build_corridor(
                    str(fid),
                    str(props.get("name", fid)),
                    [tuple(c) for c in geom.coords],
                    float(props["width_m"]),
                    list(props.get("countries", [])),
                    extra,
                )
            )
        elif kind in ("office", "parking"):
            if not isinstance(geom, Point):
                raise ValueError(f"{kind} {fid}: geometry must be a Point")
            roles = tuple(props.get("roles", []))
            if kind == "parking":
                roles = ("parking",)  # a permitted stop zone: no customs office
            offices.append(
                Office(
                    ref=str(fid),
                    name=str(props.get("name", fid)),
                    country=str(props["country"]),
                    roles=roles,
                    lon=geom.x,
                    lat=geom.y,
                    radius_m=float(props.get("radius_m", 500)),
                )
            )
        else:
            raise ValueError(
                f"feature {fid}: properties.kind must be 'corridor', 'office' or 'parking'"
            )
    return corridors, offices


def acts_network() -> dict[str, Any]:
    """The bundled ACTS-style network: three corridors across SG, MY, TH and LA."""
    text = resources.files("transit.geofence").joinpath("data/acts.geojson").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc
