"""A declaration must make sense: its time limit ahead and within 90 days, its offices
reached by its corridor and in its declared countries, the corridor's countries
declared. Each is refused by the real API with a 422 naming the field; the example
of the OpenAPI document is accepted as it stands."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from shapely.geometry import shape

from tests.e2e.test_transit_flow import new_declaration
from tests.http import call
from transit.api.app import create_app
from transit.geofence.corridor import Office, acts_network, load_geojson
from transit.geofence.itinerary import DeclaredOffice, check_itinerary, office_gaps_m
from transit.model import make_mrn
from transit.provision import import_geojson


@pytest.fixture(scope="module")
def network(settings) -> None:
    import psycopg

    with psycopg.connect(settings.database_url) as conn:
        import_geojson(conn, acts_network())
        conn.commit()


def _refused(api_module: str, admin_key: str, decl: dict) -> dict[tuple, str]:
    """The 422's problems of a declaration, by location."""
    status, body = call(f"{api_module}/api/v1/transits", "POST", admin_key, decl)
    assert status == 422, body
    return {tuple(e["loc"]): e["msg"] for e in body["detail"]}


def test_a_time_limit_an_hour_in_the_past_is_refused(
    api_module, admin_key, network, close_transits
) -> None:
    decl = new_declaration(api_module + "/api/v1", admin_key, "DPAST", close_transits)
    decl["time_limit"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    problems = _refused(api_module, admin_key, decl)
    assert list(problems) == [("body", "time_limit")]
    assert "in the past" in problems[("body", "time_limit")]


def test_a_time_limit_more_than_90_days_ahead_is_refused(
    api_module, admin_key, network, close_transits
) -> None:
    decl = new_declaration(api_module + "/api/v1", admin_key, "DFAR", close_transits)
    decl["time_limit"] = (datetime.now(UTC) + timedelta(days=91)).isoformat()
    problems = _refused(api_module, admin_key, decl)
    assert list(problems) == [("body", "time_limit")]
    assert "more than 90 days ahead" in problems[("body", "time_limit")]


def test_offices_the_corridor_does_not_reach_are_refused_each_by_its_field(
    api_module, admin_key, network, close_transits
) -> None:
    decl = new_declaration(api_module + "/api/v1", admin_key, "DREACH", close_transits)
    # Lat Krabang is in Thailand but 28 km off the Kuala Lumpur-Bangkok corridor; Sadao
    # is on it. The second office of transit is named by its index.
    decl["offices_transit"] = ["THSDO001", "THLKB001"]
    decl["office_destination"] = "THLKB001"
    problems = _refused(api_module, admin_key, decl)
    assert set(problems) == {
        ("body", "offices_transit", 1),
        ("body", "office_destination"),
    }
    assert "km outside corridor MY-TH-BKK" in problems[("body", "office_destination")]


def test_offices_outside_the_declared_countries_are_refused(
    api_module, admin_key, network, close_transits
) -> None:
    decl = new_declaration(api_module + "/api/v1", admin_key, "DCTRY", close_transits)
    decl["countries"] = ["MY"]  # but Bangkok is in Thailand, and the corridor goes there
    problems = _refused(api_module, admin_key, decl)
    assert set(problems) == {("body", "office_destination"), ("body", "countries")}
    assert "THBKK001 is an office of TH" in problems[("body", "office_destination")]
    assert "crosses TH" in problems[("body", "countries")]


def test_the_openapi_example_declaration_is_accepted(
    api_module, admin_key, network, close_transits
) -> None:
    """Copied from the API docs, with a tracker of its own and a fresh MRN."""
    example = create_app().openapi()["components"]["schemas"]["TransitIn"]["examples"][0]
    tracker = f"DEXAMPLE-{int(time.time())}"
    status, body = call(
        f"{api_module}/api/v1/devices",
        "POST",
        admin_key,
        {"device_id": tracker, "kind": "tracker", "signed": False},
    )
    assert status == 201, body
    mrn = make_mrn(26, "MY", f"DEXA{int(time.time()) % 10**8:08d}")
    close_transits.append(mrn)
    decl = example | {"mrn": mrn, "tracker_id": tracker}
    status, body = call(f"{api_module}/api/v1/transits", "POST", admin_key, decl)
    assert status == 201, body
    assert body["offices_transit"] == example["offices_transit"]


def _office(ref: str) -> Office:
    return next(o for o in load_geojson(acts_network())[1] if o.ref == ref)


def _east_at(c, lon: float, lat: float, metres: float) -> float:
    """The longitude east of (lon, lat), on its parallel, at ``metres`` from the route."""
    lo, hi = lon, lon + 0.2
    for _ in range(60):
        mid = (lo + hi) / 2
        near = c.distance_m(np.array([mid]), np.array([lat]))[0] < metres
        lo, hi = (mid, hi) if near else (lo, mid)
    return lo


def test_an_office_zone_just_touching_the_corridor_is_reached() -> None:
    corridors, _ = load_geojson(acts_network())
    c = next(c for c in corridors if c.id == "MY-TH-BKK")
    lon, lat = c.route.coords[0]
    reach_m = c.width_m / 2 + 600  # the corridor's half-width and the office's radius
    offices = [
        Office(f"MYNEAR0{i}", "near", "MY", ("transit",), _east_at(c, lon, lat, m), lat, 600)
        for i, m in enumerate((reach_m - 20, reach_m + 20))
    ]
    gaps = office_gaps_m(c.route, c.width_m, offices)
    assert gaps[0] == 0.0
    assert 19 < gaps[1] < 21


def test_check_itinerary_names_each_problem_once() -> None:
    corridors, _ = load_geojson(acts_network())
    c = next(c for c in corridors if c.id == "TH-LA-VTE")
    route = shape({"type": "LineString", "coordinates": list(c.route.coords)})
    declared = [
        DeclaredOffice("office_departure", None, _office("THLKB001")),
        DeclaredOffice("offices_transit", 0, _office("THNKI001")),
        DeclaredOffice("office_destination", None, _office("LAVTE001")),
    ]
    assert check_itinerary(c.id, route, c.width_m, c.countries, declared, ["TH", "LA"]) == []
    problems = check_itinerary(c.id, route, c.width_m, c.countries, declared, ["TH"])
    assert [(p.field, p.index) for p in problems] == [
        ("office_destination", None),
        ("countries", None),
    ]
