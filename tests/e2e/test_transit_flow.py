"""A transit from declaration to closure at the exit border, through the real API,
with partner notices delivered by webhook to a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from tests.http import call
from transit import keys
from transit.db import store
from transit.devices import payload as wire
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.types import ActiveTransit
from transit.model import Fix, SealEvent, SealStatus, make_mrn
from transit.provision import import_geojson

SECRET = "partner-secret-0123456789"


class Receiver:
    """A partner's endpoint: answers 500 to the first ``fail`` requests, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.got: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                else:
                    outer.got.append((dict(self.headers), body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notices"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def notify_once(settings) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "transit.cli", "notify", "--once", "--backoff", "0.3"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def staff(settings) -> dict[str, str]:
    with psycopg.connect(settings.database_url) as conn:
        import_geojson(conn, acts_network())
        conn.execute("DELETE FROM webhook_outbox")
        out = {
            "admin": keys.create(conn, "admin", label="flow"),
            "kul": keys.create(conn, "officer", office="MYKUL001", label="flow"),
            "bkk": keys.create(conn, "officer", office="THBKK001", label="flow"),
        }
        conn.commit()
    return out


def _report(db, tracker: str, seals: list[str], lon: float, lat: float, status=SealStatus.SEALED):
    now = datetime.now(UTC)
    seq = int(time.time() * 1000)
    store.prepare_session(db)
    store.write_batch(
        db,
        [Fix(device_id=tracker, seq=seq, idx=0, time=now, lat=lat, lon=lon, speed_kmh=0.0)],
        [
            SealEvent(
                device_id=tracker,
                seq=seq + 1 + i,
                seal_id=s,
                status=status,
                counter=1,
                time=now,
                lat=lat,
                lon=lon,
            )
            for i, s in enumerate(seals)
        ],
        [],
        [],
    )
    db.commit()


def new_declaration(
    api: str, admin: str, prefix: str, close_transits: list[str], seals: int = 0
) -> dict:
    """A tracker registered through the API and a declaration for it (KUL to BKK),
    with a fresh MRN that the test's teardown closes."""
    tracker = f"{prefix}-{int(time.time())}"
    status, body = call(
        f"{api}/devices", "POST", admin, {"device_id": tracker, "kind": "tracker", "signed": False}
    )
    assert status == 201, body
    mrn = make_mrn(26, "MY", f"{prefix[:4]}{int(time.time()) % 10**8:08d}")
    close_transits.append(mrn)
    return {
        "mrn": mrn,
        "tracker_id": tracker,
        "seal_ids": [f"{tracker}-S{k + 1}" for k in range(seals)],
        "corridor_id": "MY-TH-BKK",
        "office_departure": "MYKUL001",
        "office_destination": "THBKK001",
        "countries": ["MY", "TH"],
        "time_limit": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
    }


@pytest.fixture
def receiver(db):
    """The partner's endpoint; its registrations and notices go with it."""
    r = Receiver(fail=1)
    yield r
    r.server.shutdown()
    r.server.server_close()
    db.rollback()
    db.execute("DELETE FROM partner_endpoints WHERE url = %s", (r.url,))
    db.commit()


def test_declare_release_notify_close(
    api_module, staff, settings, db, close_transits, receiver
) -> None:
    api = api_module + "/api/v1"
    for cc in ("MY", "TH"):
        status, _ = call(
            f"{api}/partners/{cc}", "PUT", staff["admin"], {"url": receiver.url, "secret": SECRET}
        )
        assert status == 200
    decl = new_declaration(api, staff["admin"], "FLOW", close_transits, seals=2)
    tracker, mrn = decl["tracker_id"], decl["mrn"]
    decl["offices_transit"] = ["MYBKH001", "THSDO001"]
    decl["driver"] = {"name": "Driver One", "phone": "+60 12 000"}
    decl["mrn"] = mrn[:-1] + str((int(mrn[-1]) + 1) % 10)
    # A wrong check digit is refused, naming the field and the problem.
    status, body = call(f"{api}/transits", "POST", staff["kul"], decl)
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "mrn"]
    assert "check digit" in body["detail"][0]["msg"]
    decl["mrn"] = mrn
    # An officer of another office cannot declare a departure from KUL.
    status, _ = call(f"{api}/transits", "POST", staff["bkk"], decl)
    assert status == 403
    status, body = call(f"{api}/transits", "POST", staff["kul"], decl)
    assert status == 201 and body["status"] == "declared", body

    # Release is refused until the tracker and both seals report.
    status, body = call(f"{api}/transits/{mrn}/release", "POST", staff["kul"])
    assert status == 409
    assert body["detail"]["refused"] == [
        "the tracker has not reported in the last 10 minutes",
        f"seal {tracker}-S1 has not reported",
        f"seal {tracker}-S2 has not reported",
    ]
    _report(db, tracker, decl["seal_ids"], 101.6869, 3.139)  # at KUL, sealed
    status, body = call(f"{api}/transits/{mrn}/release", "POST", staff["kul"])
    assert status == 200 and body["status"] == "released", body

    # The anticipated-arrival notices: the first delivery fails, a second sender
    # process (a restart) delivers them, signed.
    assert "delivered: 1" in notify_once(settings)  # one of two: the receiver failed one
    row = db.execute(
        "SELECT attempts, last_error FROM webhook_outbox WHERE mrn = %s AND delivered_at IS NULL",
        (mrn,),
    ).fetchone()
    db.commit()
    assert row == (1, "HTTP 500")
    time.sleep(0.5)
    assert "delivered: 1" in notify_once(settings)
    assert len(receiver.got) == 2
    for headers, raw in receiver.got:
        assert headers["X-Transit-Event"] == "anticipated_arrival"
        want = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-Transit-Signature"] == want
        assert json.loads(raw)["mrn"] == mrn

    # At Bangkok: the KUL officer may not close; the BKK officer is refused while the
    # truck is away and closes once it is inside the office with its seals intact.
    status, _ = call(f"{api}/transits/{mrn}/close", "POST", staff["kul"], {})
    assert status == 403
    status, body = call(f"{api}/transits/{mrn}/close", "POST", staff["bkk"], {})
    assert status == 409
    assert "the truck is not inside the geofence of THBKK001" in body["detail"]["refused"]
    _report(db, tracker, decl["seal_ids"], 100.5018, 13.7563)
    status, body = call(f"{api}/transits/{mrn}/close", "POST", staff["bkk"], {})
    assert status == 200 and body["status"] == "closed", body
    armed = db.execute(
        "SELECT bool_or(armed) FROM seals WHERE seal_id = ANY(%s)", (decl["seal_ids"],)
    ).fetchone()
    assert armed == (False,)
    status, body = call(f"{api}/transits/{mrn}/events", "GET", staff["admin"])
    kinds = [e["kind"] for e in body["items"]]
    assert kinds == ["declared", "released", "arrived", "closed"]
    status, body = call(f"{api}/audit?limit=1000", "GET", staff["admin"])
    assert body["intact"] is True
    mine = {(e["action"], e["subject"]) for e in body["items"]}
    assert {("transit.declared", mrn), ("transit.released", mrn), ("transit.closed", mrn)} <= mine


def test_close_with_a_finding_records_an_incident(api_module, staff, db, close_transits) -> None:
    api = api_module + "/api/v1"
    decl = new_declaration(api, staff["admin"], "FIND", close_transits, seals=1)
    tracker, mrn, seals = decl["tracker_id"], decl["mrn"], decl["seal_ids"]
    status, _ = call(f"{api}/transits", "POST", staff["admin"], decl)
    assert status == 201
    _report(db, tracker, seals, 101.6869, 3.139)
    assert call(f"{api}/transits/{mrn}/release", "POST", staff["admin"])[0] == 200
    _report(db, tracker, seals, 100.5018, 13.7563, SealStatus.OPENED)
    status, body = call(f"{api}/transits/{mrn}/close", "POST", staff["bkk"], {})
    assert (
        status == 409 and f"seal {seals[0]} reports opened, not sealed" in body["detail"]["refused"]
    )
    status, body = call(
        f"{api}/transits/{mrn}/close",
        "POST",
        staff["bkk"],
        {"finding": "seal found open, goods checked"},
    )
    assert status == 200 and body["status"] == "closed"
    events = call(f"{api}/transits/{mrn}/events", "GET", staff["admin"])[1]["items"]
    incident = next(e for e in events if e["kind"] == "incident")
    assert incident["details"]["code"] == 2
    assert incident["details"]["checks_failed"] == [f"seal {seals[0]} reports opened, not sealed"]


def test_ingest_records_a_border_crossing_and_notifies_the_country_entered(
    db, close_transits
) -> None:
    corridors, offices = load_geojson(acts_network())
    p = Pipeline(GeofenceEngine(corridors, offices, load(default_path())))
    mrn = make_mrn(26, "MY", "CROSSING0001")
    p.devices = {"TRKX": None}
    p.set_transits(
        {
            "TRKX": ActiveTransit(
                mrn,
                "TRKX",
                "MY-TH-BKK",
                (),
                ("MY", "TH"),
                ("MYKUL001", "MYBKH001", "THSDO001", "THBKK001"),
                None,
                {},
                "in_transit",
            )
        },
        set(),
    )
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    # From the Malaysian post at Bukit Kayu Hitam to the Thai one at Sadao.
    path = [(100.4210, 6.5080), (100.4220, 6.5140), (100.4235, 6.5220), (100.4250, 6.5300)]
    msgs = [
        RawMessage(
            wire.topic_for("TRKX", "telemetry"),
            json.dumps(
                {
                    "v": 1,
                    "seq": i + 1,
                    "fixes": [
                        {
                            "t": (t0 + timedelta(seconds=10 * i)).isoformat(),
                            "lat": lat,
                            "lon": lon,
                            "speed_kmh": 20.0,
                        }
                    ],
                }
            ).encode(),
        )
        for i, (lon, lat) in enumerate(path)
    ]
    result = p.process(msgs, now=t0)
    crossings = [e for e in result.lifecycle if e.action == "cross"]
    assert len(crossings) == 1
    assert (crossings[0].details["from"], crossings[0].details["to"]) == ("MY", "TH")
    assert crossings[0].details["office"] == "THSDO001"
    # Written as ingest writes it: the timeline, the audit trail and a notice to TH.
    from transit.db import devices, transits

    devices.register(db, "TRKX", "tracker")
    transits.declare(
        db,
        mrn=mrn,
        tracker_id="TRKX",
        corridor_id="MY-TH-BKK",
        office_departure="MYKUL001",
        office_destination="THBKK001",
        countries=["MY", "TH"],
        time_limit=t0 + timedelta(days=1),
        status="in_transit",
    )
    close_transits.append(mrn)
    db.execute(
        "INSERT INTO partner_endpoints (country, url, secret)"
        " VALUES ('TH', 'http://127.0.0.1:9/x', 'k') ON CONFLICT (country) DO NOTHING"
    )
    assert store.apply_lifecycle(db, crossings) == 1
    db.execute("DELETE FROM partner_endpoints WHERE url = 'http://127.0.0.1:9/x'")
    kind = db.execute(
        "SELECT kind FROM transit_events WHERE mrn = %s ORDER BY id DESC LIMIT 1", (mrn,)
    ).fetchone()
    notice = db.execute(
        "SELECT country, event FROM webhook_outbox WHERE mrn = %s ORDER BY id DESC LIMIT 1", (mrn,)
    ).fetchone()
    db.commit()
    assert kind == ("crossed",) and notice == ("TH", "crossing")


def test_cancel_incident_and_track_downsampling(api_module, staff, db, close_transits) -> None:
    api = api_module + "/api/v1"
    decl = new_declaration(api, staff["admin"], "CANC", close_transits)
    tracker, mrn = decl["tracker_id"], decl["mrn"]
    assert call(f"{api}/transits", "POST", staff["kul"], decl)[0] == 201
    # An incident needs a transit under way; a declared one is refused, with the rule.
    status, body = call(
        f"{api}/transits/{mrn}/incidents", "POST", staff["kul"], {"code": 6, "description": "x"}
    )
    assert (
        status == 409
        and "cannot incident a transit that is declared" in body["detail"]["refused"][0]
    )
    status, body = call(
        f"{api}/transits/{mrn}/incidents", "POST", staff["kul"], {"code": 9, "description": "x"}
    )
    assert status == 422 and body["detail"][0]["loc"] == ["body", "code"]
    # Under way, an incident is recorded with its NCTS text; the track is downsampled.
    t0 = datetime.now(UTC) - timedelta(hours=1)
    store.prepare_session(db)
    store.write_batch(
        db,
        [
            Fix(
                device_id=tracker,
                seq=i + 1,
                idx=0,
                time=t0 + timedelta(seconds=i),
                lat=3.0 + i * 1e-5,
                lon=101.5,
            )
            for i in range(3000)
        ],
        [],
        [],
        [],
    )
    db.execute(
        "UPDATE transits SET status = 'in_transit', declared_at = %s WHERE mrn = %s", (t0, mrn)
    )
    db.commit()
    status, body = call(
        f"{api}/transits/{mrn}/incidents",
        "POST",
        staff["kul"],
        {"code": 3, "description": "goods moved to truck B", "new_vehicle": "B 1234"},
    )
    assert (
        status == 201
        and body["incident"]["code_text"] == "goods transferred to another means of transport"
    )
    status, track = call(f"{api}/transits/{mrn}/track?points=100", "GET", staff["admin"])
    props = track["features"][0]["properties"]
    assert props["fixes"] == 3000 and props["bucket_s"] >= 29
    assert 90 <= len(track["features"][0]["geometry"]["coordinates"]) <= 110
    status, track = call(f"{api}/transits/{mrn}/track?points=5000", "GET", staff["admin"])
    assert len(track["features"][0]["geometry"]["coordinates"]) == 3000
    # Once it left, it cannot be cancelled; a declared one can.
    status, body = call(f"{api}/transits/{mrn}/cancel", "POST", staff["kul"], {"reason": "x"})
    assert status == 409
    db.execute("UPDATE transits SET status = 'declared' WHERE mrn = %s", (mrn,))
    db.commit()
    status, body = call(
        f"{api}/transits/{mrn}/cancel", "POST", staff["kul"], {"reason": "wrong truck"}
    )
    assert status == 200 and body["status"] == "cancelled"
