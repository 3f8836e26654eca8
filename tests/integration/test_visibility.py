"""Who may see which transit is decided in one place (transit/db/visibility.py), and
every reader uses it: through the real API and live feed, an officer and a partner
each see the same set of transits in the list, the detail, the alerts and the live
feed, and the SQL and Python forms of the rule agree."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import websockets

from transit import keys
from transit.db import devices, transits
from transit.db.visibility import PARTNER_FIELDS, Visibility
from transit.geofence.corridor import acts_network
from transit.model import make_mrn
from transit.provision import import_geojson

ITINERARY = (
    "corridor_id",
    "office_departure",
    "offices_transit",
    "office_destination",
    "countries",
)
ITINERARIES = {
    "A": ("MY-TH-BKK", "MYKUL001", [], "THBKK001", ["MY", "TH"]),
    "B": ("SG-MY-KUL", "SGPSA001", [], "MYKUL001", ["SG", "MY"]),
    "C": ("TH-LA-VTE", "THBKK001", ["THNKI001"], "LAVTE001", ["TH", "LA"]),
    "D": ("SG-MY-KUL", "SGPSA001", [], "MYJHB001", ["SG", "MY"]),
}
# Each key's scope and the transits it sees: by departure, destination, office of
# transit, country; everything for the control room.
SEES = {
    "officer_kul": {"A", "B"},
    "officer_nki": {"C"},
    "partner_th": {"A", "C"},
    "control_room": {"A", "B", "C", "D"},
}


@pytest.fixture(scope="module")
def world(settings) -> Any:
    """Four transits under way, each with a fresh fix and an open alert, and a key per
    scope. The transits are closed after the module."""
    token = secrets.token_hex(3).upper()
    mrns: dict[str, str] = {}
    with psycopg.connect(settings.database_url) as conn:
        import_geojson(conn, acts_network())
        since = int(conn.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()[0])
        for k, (name, itinerary) in enumerate(ITINERARIES.items()):
            route = dict(zip(ITINERARY, itinerary, strict=True))
            mrn = make_mrn(26, route["countries"][0], f"VIS{token}{k:03d}")
            tracker = f"VIS-{token}-{name}"
            devices.register(conn, tracker, "tracker")
            limit = datetime.now(UTC) + timedelta(days=2)
            driver = {"driver": {"name": "A Driver", "phone": "+66 2 123"}}
            transits.declare(
                conn,
                mrn=mrn,
                tracker_id=tracker,
                time_limit=limit,
                **route,
                status="in_transit",
                details=driver,
            )
            conn.execute(
                "INSERT INTO fixes (time, device_id, seq, idx, lat, lon, speed_kmh)"
                " VALUES (now(), %s, 1, 0, 3.1, 101.7, 60)",
                (tracker,),
            )
            conn.execute(
                "INSERT INTO alerts (mrn, device_id, type, cond_key, severity, event_time)"
                " VALUES (%s, %s, 'seal_tampered', 'S1', 'critical', now())",
                (mrn, tracker),
            )
            mrns[name] = mrn
        keyed = {
            "officer_kul": keys.create(conn, "officer", office="MYKUL001", label="vis"),
            "officer_nki": keys.create(conn, "officer", office="THNKI001", label="vis"),
            "partner_th": keys.create(conn, "partner", country="TH", label="vis"),
            "control_room": keys.create(conn, "control_room", label="vis"),
        }
        conn.commit()
    yield {"mrns": mrns, "keys": keyed, "since": since}
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE transits SET status = 'closed', closed_at = now() WHERE mrn = ANY(%s)",
            (list(mrns.values()),),
        )
        conn.commit()


def _get(url: str, key: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def _live(url: str) -> tuple[set[str], set[str]]:
    """The MRNs of the trucks and of the alerts a new client gets: the alerts it missed
    (``since``) come before its first full snapshot of the trucks."""
    trucks: set[str] = set()
    alerts: set[str] = set()
    async with websockets.connect(url) as ws:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "alert":
                alerts.add(frame["alert"]["mrn"])
            elif frame["type"] == "trucks" and frame["full"]:
                trucks = {item[0] for item in frame["items"]}
                return trucks, alerts


def _seen(api: str, world: Any, key: str) -> dict[str, set[str]]:
    """Which of the world's transits the key sees through each reader."""
    ours = {mrn: name for name, mrn in world["mrns"].items()}
    _, listed = _get(f"{api}/api/v1/transits?limit=1000", key)
    detail = {mrn for mrn in ours if _get(f"{api}/api/v1/transits/{mrn}", key)[0] == 200}
    with_alerts = set()
    for mrn in ours:
        status, body = _get(f"{api}/api/v1/alerts?mrn={mrn}", key)
        if status == 200 and body["items"]:
            with_alerts.add(mrn)
    ws = api.replace("http://", "ws://") + f"/api/v1/live?key={key}&since={world['since']}"
    trucks, alerts = asyncio.run(_live(ws))
    return {
        reader: {ours[m] for m in found if m in ours}
        for reader, found in {
            "list": {t["mrn"] for t in listed["items"]},
            "detail": detail,
            "alerts": with_alerts,
            "live trucks": trucks,
            "live alerts": alerts,
        }.items()
    }


@pytest.mark.parametrize("who", ["officer_kul", "officer_nki", "control_room"])
def test_staff_see_the_same_transits_in_the_list_detail_alerts_and_live_feed(
    api_module, world, who
) -> None:
    seen = _seen(api_module, world, world["keys"][who])
    assert seen == dict.fromkeys(seen, SEES[who])


def test_a_partner_sees_the_same_transits_in_the_list_detail_and_live_feed_and_no_alerts(
    api_module, world
) -> None:
    key = world["keys"]["partner_th"]
    seen = _seen(api_module, world, key)
    assert seen == {
        "list": SEES["partner_th"],
        "detail": SEES["partner_th"],
        "alerts": set(),  # the route is not a partner's (403)
        "live trucks": SEES["partner_th"],
        "live alerts": set(),
    }
    status, _ = _get(f"{api_module}/api/v1/alerts", key)
    assert status == 403
    status, body = _get(f"{api_module}/api/v1/transits/{world['mrns']['A']}", key)
    assert status == 200 and set(body) == set(PARTNER_FIELDS)
    status, body = _get(
        f"{api_module}/api/v1/transits/{world['mrns']['A']}", world["keys"]["officer_kul"]
    )
    assert body["driver"] == {"name": "A Driver", "phone": "+66 2 123"}


@pytest.mark.parametrize(
    "vis",
    [
        Visibility(),
        Visibility("office", "MYKUL001"),
        Visibility("office", "THNKI001"),
        Visibility("office", "LAVTE001"),
        Visibility("country", "TH"),
        Visibility("country", "SG"),
        Visibility("country", None),
    ],
    ids=str,
)
def test_the_sql_and_python_forms_of_the_rule_agree(db, world, vis: Visibility) -> None:
    where, params = vis.where("t")
    for mrn in world["mrns"].values():
        row = db.execute(
            "SELECT countries, office_departure, offices_transit, office_destination,"
            f" {where} AS seen FROM transits t WHERE mrn = %(mrn)s",
            {"mrn": mrn, **params},
        ).fetchone()
        countries, dep, via, dest, seen = row
        assert bool(seen) == vis.sees(countries, {dep, dest, *via}), (vis, mrn)
