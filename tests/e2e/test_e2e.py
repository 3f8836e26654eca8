"""End to end: simulator -> Mosquitto -> ingest -> TimescaleDB -> HTTP API."""

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from firmware_sim.fleet import Fleet
from firmware_sim.scenario import fleet_plan
from firmware_sim.truck import Incident
from tests.conftest import put_under_way
from transit.geofence.corridor import acts_network
from transit.provision import import_geojson, provision_fleet, sync_broker

SEED = 77


KEY: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _key(admin_key):
    KEY["admin"] = admin_key


def _get(url: str):
    req = urllib.request.Request(url, headers={"X-API-Key": KEY["admin"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def test_simulated_deviation_and_seal_cut_are_readable_through_the_api(
    settings, db, api_url, ingest, close_transits
):
    network = acts_network()
    # Truck 3 detours at 20 s, truck 7 cuts a seal; no traffic, so 20 fixes each.
    plans = fleet_plan(network, 8, seed=SEED, traffic=False)
    close_transits.extend(p.mrn for p in plans)
    # Flaky modem and firmware on clean trucks: each message twice, a stretch out of
    # order, a reboot with its backlog uploaded later. Still exactly one row per fix.
    plans[5].incidents += [Incident("duplicate", 0), Incident("reorder", 50, 60)]
    plans[6].incidents += [Incident("reboot", 40, 50)]
    put_under_way(db, settings, plans, forget_fixes=True)

    fleet = Fleet(settings, [p.truck(i) for i, p in enumerate(plans)], realtime=False)
    fleet.connect()
    try:
        # Event time from now on (the transit was just declared; its track starts at its
        # declaration, and fixes over the clock tolerance ahead would be filtered): 20
        # intervals of 10 s stay within it.
        fleet.run(steps=20, start=datetime.now(UTC).replace(microsecond=0))
        # Every fix once: as many rows as distinct fix times, 20 for every truck.
        expected = {p.device_id: (20, 20) for p in plans}
        deadline = time.monotonic() + 30
        counts: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            rows = db.execute(
                "SELECT device_id, count(*), count(DISTINCT time) FROM fixes"
                " WHERE device_id = ANY(%s) GROUP BY 1",
                ([p.device_id for p in plans],),
            ).fetchall()
            counts = {r[0]: (r[1], r[2]) for r in rows}
            db.commit()
            if counts == expected:
                break
            time.sleep(0.2)
        assert counts == expected
    finally:
        fleet.close()

    detour, cut = plans[3], plans[7]
    dev = _get(f"{api_url}/api/v1/alerts?mrn={detour.mrn}")
    assert [a["type"] for a in dev["items"]] == ["route_deviation"]
    assert dev["items"][0]["details"]["distance_m"] > 750
    seal = _get(f"{api_url}/api/v1/alerts?mrn={cut.mrn}")
    assert [a["type"] for a in seal["items"]] == ["seal_tampered"]
    clean = [p.mrn for i, p in enumerate(plans) if i not in (3, 7)]
    for mrn in clean:
        assert _get(f"{api_url}/api/v1/alerts?mrn={mrn}")["count"] == 0, mrn

    transit = _get(f"{api_url}/api/v1/transits/{detour.mrn}")
    assert transit["status"] == "in_transit" and transit["open_alerts"] == 1
    track = _get(f"{api_url}/api/v1/transits/{detour.mrn}/track")
    line = track["features"][0]["geometry"]
    assert line["type"] == "LineString" and len(line["coordinates"]) == 20


def test_api_refuses_a_malformed_mrn_with_a_reason(api_url):
    with pytest.raises(urllib.error.HTTPError) as exc:
        _get(f"{api_url}/api/v1/transits/NOT-AN-MRN")
    assert exc.value.code == 422
    body = json.load(exc.value)
    assert body["detail"][0]["loc"] == ["path", "mrn"]


def test_signed_device_forged_and_unsigned_messages_are_dead_lettered(settings, db, ingest):
    import secrets

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from transit.broker import device_password
    from transit.db.devices import register as register_device
    from transit.devices import payload as wire
    from transit.mqtt import make_client

    dev = f"SIGNED{secrets.token_hex(4).upper()}"
    key = secrets.token_bytes(32)
    register_device(db, dev, "tracker", key)
    db.commit()
    sync_broker(db, settings)
    time.sleep(0.5)
    c = make_client(settings, dev, device_password(settings.device_secret, dev))
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    topic = wire.topic_for(dev, "telemetry")

    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()

    def body(seq: int, lat: float) -> bytes:
        return json.dumps(
            {"v": 1, "seq": seq, "fixes": [{"t": stamp, "lat": lat, "lon": 103.8}]}
        ).encode()

    def send(payload: bytes, sig: str | None) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if sig is not None:
            props.UserProperty = ("sig", sig)
        c.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)

    good = body(1, 1.3)
    send(good, wire.sign(key, topic, good))
    send(good, wire.sign(key, topic, good))  # replayed: stored once
    send(body(2, 1.4), wire.sign(key, topic, good))  # forged: signature of another body
    send(body(3, 1.5), None)  # unsigned
    deadline = time.monotonic() + 20
    reasons: list[str] = []
    while time.monotonic() < deadline and len(reasons) < 2:
        reasons = [
            r[0]
            for r in db.execute(
                "SELECT reason FROM dead_letters WHERE topic = %s ORDER BY id", (topic,)
            ).fetchall()
        ]
        db.commit()
        time.sleep(0.1)
    c.disconnect()
    c.loop_stop()
    assert reasons == ["bad_signature", "unsigned"]
    rows = db.execute("SELECT seq, lat FROM fixes WHERE device_id = %s", (dev,)).fetchall()
    assert rows == [(1, 1.3)]
    raw = db.execute(
        "SELECT raw FROM dead_letters WHERE topic = %s ORDER BY id LIMIT 1", (topic,)
    ).fetchone()[0]
    assert bytes(raw) == body(2, 1.4)


def test_metrics_count_dead_letters_by_reason_and_health_says_ingest_keeps_up(
    settings, db, ingest, api_url
):
    import secrets

    from transit.db.devices import register as register_device
    from transit.devices import payload as wire
    from transit.mqtt import make_client

    dev = f"METRICS{secrets.token_hex(4).upper()}"  # registered after the worker started
    register_device(db, dev)
    db.commit()
    c = make_client(settings, settings.mqtt_admin_user, settings.mqtt_admin_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    c.publish(wire.topic_for(dev, "telemetry"), b"not json", qos=1).wait_for_publish(5)
    c.publish(wire.topic_for(dev, "telemetry"), b'{"v":1}', qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()

    def metric(text: str, name: str) -> float:
        lines = [ln for ln in text.splitlines() if ln.startswith(name)]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    deadline = time.monotonic() + 15
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{api_url}/metrics", timeout=10) as r:
            text = r.read().decode()
        if (
            metric(text, 'transit_ingest_dead_letters_total{reason="schema"') >= 1
            and metric(text, 'transit_ingest_dead_letters_total{reason="not_json"') >= 1
        ):
            break
        time.sleep(0.3)
    assert metric(text, 'transit_ingest_dead_letters_total{reason="not_json"') >= 1
    assert metric(text, 'transit_ingest_dead_letters_total{reason="schema"') >= 1
    assert metric(text, "transit_ingest_messages_in_total") >= 2
    assert "transit_ingest_batch_size_bucket" in text
    health = _get(f"{api_url}/health/ingest")
    assert health["keeping_up"] is True
    assert any(w["worker"] == "transit-ingest-0" for w in health["workers"])


def test_watchdog_raises_signal_lost_for_a_silent_tracker(settings, db, ingest, close_transits):
    plans = fleet_plan(acts_network(), 1, seed=78, incidents=False, traffic=False)
    close_transits.append(plans[0].mrn)
    import_geojson(db, acts_network())
    db.execute("DELETE FROM alerts WHERE mrn = %s", (plans[0].mrn,))
    db.commit()
    provision_fleet(db, plans)
    # Last heard five minutes ago, by the database's clock.
    db.execute(
        "UPDATE devices SET last_seen = now() - interval '5 minutes' WHERE device_id = %s",
        (plans[0].device_id,),
    )
    db.commit()
    deadline = time.monotonic() + 20
    types: list[str] = []
    while time.monotonic() < deadline and "signal_lost" not in types:
        types = [
            r[0]
            for r in db.execute(
                "SELECT type FROM alerts WHERE mrn = %s", (plans[0].mrn,)
            ).fetchall()
        ]
        db.commit()
        time.sleep(0.5)
    assert types == ["signal_lost"]
