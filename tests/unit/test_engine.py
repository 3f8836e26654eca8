"""The geofence engine on the bundled ACTS network and the real borders dataset."""

from pathlib import Path

import numpy as np
import pytest

from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.rules.movement import Thresholds


@pytest.fixture(scope="module")
def engine() -> GeofenceEngine:
    path = default_path()
    assert Path(path).exists(), "make setup extracts the borders (scripts/setup-geodata.sh)"
    corridors, offices = load_geojson(acts_network())
    return GeofenceEngine(corridors, offices, load(path))


def test_borders_place_cities_and_both_sides_of_each_crossing(engine) -> None:
    pts = {
        (101.6869, 3.1390): "MY",
        (100.5018, 13.7563): "TH",
        (102.6000, 17.9667): "LA",
        (103.8198, 1.3521): "SG",
        (100.4210, 6.5080): "MY",
        (100.4250, 6.5300): "TH",
        (102.7250, 17.8650): "TH",
        (102.7050, 17.8920): "LA",
        (104.5, 5.0): None,
    }
    got = engine.borders.country_of(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    assert list(got) == list(pts.values())


def test_corridor_countries_are_found_from_borders_not_declared(engine) -> None:
    assert set(engine.countries_of("SG-MY-KUL")) == {"SG", "MY"}
    assert set(engine.countries_of("MY-TH-BKK")) == {"MY", "TH"}
    assert set(engine.countries_of("TH-LA-VTE")) == {"TH", "LA"}


def test_check_gives_inside_country_distance_and_zone(engine) -> None:
    lons = np.array([103.7690, 103.6580, 103.9000, 100.4210])
    lats = np.array([1.4450, 1.5350, 1.5350, 6.5080])
    ids = engine.indices(["SG-MY-KUL", "SG-MY-KUL", "SG-MY-KUL", "MY-TH-BKK"])
    speeds = np.array([0.0, 80.0, 80.0, 2.0])
    c = engine.check(lons, lats, ids, speeds, Thresholds().stop_speed_kmh)
    assert c.inside.tolist() == [True, True, False, True]
    assert list(c.country) == ["SG", "MY", "MY", "MY"]
    d = c.distance_of(np.arange(len(c.inside)))
    assert d[2] > 10_000 and d[0] == 0
    # Slow fixes at an office are in its zone; a fast one is not looked up.
    assert list(c.zone) == ["SGWDL001", None, None, "MYBKH001"]


def test_zones_are_found_at_each_fixs_own_stop_speed(engine) -> None:
    # Two fixes crawling at 8 km/h through an office: stopped only for the transit
    # whose stop speed is 10 km/h; no fixed speed of the engine's own decides it.
    lons, lats = np.array([100.4210, 100.4210]), np.array([6.5080, 6.5080])
    ids = engine.indices(["MY-TH-BKK", "MY-TH-BKK"])
    speeds = np.array([8.0, 8.0])
    c = engine.check(lons, lats, ids, speeds, np.array([10.0, 5.0]))
    assert list(c.zone) == ["MYBKH001", None]
    assert list(engine.check(lons, lats, ids, speeds, 10.0).zone) == ["MYBKH001"] * 2
    assert list(engine.check(lons, lats, ids).zone) == [None, None]  # no speeds: no zones
    with pytest.raises(TypeError):
        engine.check(lons, lats, ids, speeds)
