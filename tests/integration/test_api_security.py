"""Access control on the real API: every route with every role, against the one
permission table in the code; partners see only their transits and fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.http import call
from transit import keys
from transit.api.app import create_app
from transit.api.security import PERMISSIONS
from transit.db import devices, transits
from transit.geofence.corridor import acts_network
from transit.model import make_mrn
from transit.provision import import_geojson

ROLES = ("admin", "officer", "control_room", "partner")


@pytest.fixture(scope="module")
def role_keys(settings) -> dict[str, str]:
    with psycopg.connect(settings.database_url) as conn:
        import_geojson(conn, acts_network())
        out = {
            "admin": keys.create(conn, "admin", label="t"),
            "officer": keys.create(conn, "officer", office="MYKUL001", label="t"),
            "control_room": keys.create(conn, "control_room", label="t"),
            "partner": keys.create(conn, "partner", country="TH", label="t"),
        }
        conn.commit()
    return out


def test_every_route_is_in_the_permission_table() -> None:
    doc = create_app().openapi()
    routes = {
        (m.upper(), p) for p, ops in doc["paths"].items() if p.startswith("/api/v1") for m in ops
    }
    assert routes == set(PERMISSIONS)


def test_every_route_with_every_role_answers_as_the_table_says(api_module, role_keys) -> None:
    filled = {
        "{mrn}": "26MYS001T0000003A2",
        "{alert_id}": "1",
        "{device_id}": "NO-SUCH-DEVICE",
        "{corridor_id}": "NO-SUCH",
        "{country}": "ZZ",
        "{seq}": "1",
    }
    checked = 0
    for (method, template), allowed in sorted(PERMISSIONS.items()):
        path = template
        for k, v in filled.items():
            path = path.replace(k, v)
        # No key at all: refused before anything else.
        status, _ = call(api_module + path, method, None, {} if method != "GET" else None)
        assert status == 401, (method, template)
        for role in ROLES:
            status, body = call(
                api_module + path, method, role_keys[role], {} if method != "GET" else None
            )
            if role in allowed:
                assert status not in (401, 403), (method, template, role, status, body)
            else:
                assert status == 403, (method, template, role, status, body)
                assert "may not use this route" in body["detail"]
            checked += 1
    assert checked == len(PERMISSIONS) * len(ROLES)


def _declare(conn, serial: str, countries, dest: str, corridor: str, tracker: str) -> str:
    mrn = make_mrn(26, countries[0], serial)
    devices.register(conn, tracker, "tracker")
    transits.declare(
        conn,
        mrn=mrn,
        tracker_id=tracker,
        corridor_id=corridor,
        office_departure="MYKUL001" if countries[0] == "MY" else "SGPSA001",
        office_destination=dest,
        countries=list(countries),
        time_limit=datetime.now(UTC) + timedelta(days=2),
        status="declared",
        details={"driver": {"name": "A Driver", "phone": "+60 12 345"}, "guarantee": None},
    )
    return mrn


def test_a_partner_sees_only_transits_through_its_country_and_no_private_fields(
    api_module, role_keys, settings
) -> None:
    with psycopg.connect(settings.database_url) as conn:
        via_th = _declare(conn, "PARTNERTH001", ["MY", "TH"], "THBKK001", "MY-TH-BKK", "TEST-P1")
        not_th = _declare(conn, "PARTNERSG001", ["SG", "MY"], "MYKUL001", "SG-MY-KUL", "TEST-P2")
        conn.commit()
    p = role_keys["partner"]
    status, body = call(f"{api_module}/api/v1/transits/{via_th}", key=p)
    assert status == 200
    assert "driver" not in body and "guarantee" not in body and "thresholds" not in body
    assert body["countries"] == ["MY", "TH"]
    status, _ = call(f"{api_module}/api/v1/transits/{not_th}", key=p)
    assert status == 404
    status, body = call(f"{api_module}/api/v1/transits?limit=1000", key=p)
    mrns = {t["mrn"] for t in body["items"]}
    assert via_th in mrns and not_th not in mrns
    assert all("TH" in t["countries"] for t in body["items"])
    # Staff see the private fields.
    status, body = call(f"{api_module}/api/v1/transits/{via_th}", key=role_keys["control_room"])
    assert body["driver"] == {"name": "A Driver", "phone": "+60 12 345"}


def test_an_officer_acts_only_for_their_office(api_module, role_keys, settings) -> None:
    with psycopg.connect(settings.database_url) as conn:
        sg = _declare(conn, "OFFICERSG001", ["SG", "MY"], "MYKUL001", "SG-MY-KUL", "TEST-P3")
        conn.commit()
    # MYKUL001 is this transit's destination: it sees it, but cannot release it.
    status, body = call(f"{api_module}/api/v1/transits/{sg}/release", "POST", role_keys["officer"])
    assert status == 403
    assert re.search(r"only an officer of SGPSA001 may release it", body["detail"])
