from itertools import pairwise

import numpy as np
import pytest
from pyproj import Geod

from transit.geofence.corridor import acts_network, build_corridor, load_geojson

GEOD = Geod(ellps="WGS84")


def test_bundled_network_has_three_corridors_across_four_countries() -> None:
    corridors, offices = load_geojson(acts_network())
    assert {c.id for c in corridors} == {"SG-MY-KUL", "MY-TH-BKK", "TH-LA-VTE"}
    assert {cc for c in corridors for cc in c.countries} == {"SG", "MY", "TH", "LA"}
    assert all(len(o.ref) == 8 for o in offices)


@pytest.mark.parametrize("corridor_id", ["SG-MY-KUL", "MY-TH-BKK", "TH-LA-VTE"])
def test_corridor_edge_is_within_half_a_percent_of_its_half_width(corridor_id: str) -> None:
    """Measure the projection's error: walk perpendicular from waypoints, find the edge."""
    corridors, _ = load_geojson(acts_network())
    c = next(c for c in corridors if c.id == corridor_id)
    half = c.width_m / 2
    coords = list(c.route.coords)
    for (lon1, lat1), (lon2, lat2) in pairwise(coords):
        # Segments are straight in lon/lat (RFC 7946): take the midpoint there and the
        # line's local direction, then walk perpendicular on the ellipsoid.
        mlon, mlat = (lon1 + lon2) / 2, (lat1 + lat2) / 2
        az, _, _ = GEOD.inv(
            mlon - (lon2 - lon1) * 1e-4,
            mlat - (lat2 - lat1) * 1e-4,
            mlon + (lon2 - lon1) * 1e-4,
            mlat + (lat2 - lat1) * 1e-4,
        )
        for side in (90, -90):
            inner = GEOD.fwd(mlon, mlat, az + side, half * 0.995)
            outer = GEOD.fwd(mlon, mlat, az + side, half * 1.005)
            got = c.contains(np.array([inner[0], outer[0]]), np.array([inner[1], outer[1]]))
            assert got.tolist() == [True, False], (corridor_id, lon1, lat1, side)


def test_distance_to_route_is_in_true_metres() -> None:
    c = build_corridor("T", "test", [(100.0, 10.0), (100.0, 11.0)], 1000, ["TH"])
    lon, lat, _ = GEOD.fwd(100.0, 10.5, 90, 2000)
    assert abs(c.distance_m(np.array([lon]), np.array([lat]))[0] - 2000) < 5


def test_bad_corridors_are_refused() -> None:
    with pytest.raises(ValueError, match="width_m"):
        build_corridor("T", "t", [(0, 0), (1, 1)], 0, [])
    with pytest.raises(ValueError, match="two waypoints"):
        build_corridor("T", "t", [(0, 0)], 10, [])
