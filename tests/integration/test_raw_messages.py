"""Devices on MQTT 3.1.1 sign in an envelope, through the real broker, a real ingest
worker and the database; every accepted message is kept as signed, and an alert's
evidence verifies again with the device's key (API and command line), a tampered
byte does not."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from firmware_sim.fleet import Fleet
from firmware_sim.scenario import fleet_plan
from tests.conftest import ROOT, put_under_way
from transit.broker import device_password
from transit.db import devices
from transit.devices import payload as wire
from transit.geofence.corridor import acts_network
from transit.model import make_mrn
from transit.mqtt import make_client

STEPS = 12


def _get(url: str, key: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _wait(db: psycopg.Connection[Any], sql: str, args: tuple, want: Any) -> Any:
    """Poll ``sql`` until it returns ``want`` (at most 30 s); its last answer."""
    deadline = time.monotonic() + 30
    got = None
    while time.monotonic() < deadline:
        got = db.execute(sql, args).fetchall()
        db.commit()
        if got == want:
            break
        time.sleep(0.2)
    return got


def _verify(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transit.cli", "messages", "verify", *cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_mqtt311_truck_signs_in_envelopes_and_an_alerts_evidence_verifies_again(
    settings, db, ingest, api_url, admin_key, close_transits
) -> None:
    token = secrets.token_hex(4).upper()
    base = fleet_plan(acts_network(), 1, seed=11, incidents=False, traffic=False)[0]
    plan = replace(base, device_id=f"ENV{token}", mrn=make_mrn(26, "MY", f"ENV{token}"))
    close_transits.append(plan.mrn)
    key = secrets.token_bytes(32)
    devices.register(db, plan.device_id, "tracker", key)
    db.commit()
    put_under_way(db, settings, [plan])

    fleet = Fleet(
        settings, [plan.truck(1)], realtime=False, mqtt_version="3.1.1", keys={plan.device_id: key}
    )
    fleet.connect()
    try:
        assert fleet.clients[plan.device_id].protocol == 4  # MQTT 3.1.1 on the wire
        start = datetime.now(UTC) - timedelta(seconds=STEPS * 10)
        fleet.run(steps=STEPS, start=start)
        fleet.inject_breach(plan.device_id)  # a seal cut: seal_tampered
        fleet.flush()
    finally:
        fleet.close()

    # Every fix stored; every message kept as signed, in an envelope, verifying.
    fixes = _wait(
        db, "SELECT count(*) FROM fixes WHERE device_id = %s", (plan.device_id,), [(STEPS,)]
    )
    assert fixes == [(STEPS,)]
    seals = len(plan.seal_ids) + 1  # armed at the start, then the cut
    kept = _wait(
        db,
        "SELECT count(*), count(*) FILTER (WHERE envelope) FROM raw_messages WHERE device_id = %s",
        (plan.device_id,),
        [(STEPS + seals, STEPS + seals)],
    )
    assert kept == [(STEPS + seals, STEPS + seals)]
    for topic, payload, sig in db.execute(
        "SELECT topic, payload, sig FROM raw_messages WHERE device_id = %s", (plan.device_id,)
    ).fetchall():
        wire.verify(key, topic, bytes(payload), sig)
        assert json.loads(bytes(payload))["v"] == 1  # the body, not the envelope

    # The alert's evidence: the seal report it was raised on, found by device and
    # time, then the message of that seq, verified again.
    alert = _wait(
        db,
        "SELECT type FROM alerts WHERE mrn = %s",
        (plan.mrn,),
        [("seal_tampered",)],
    )
    assert alert == [("seal_tampered",)]
    (seq,) = db.execute(
        "SELECT s.seq FROM alerts a JOIN seal_events s ON s.device_id = a.device_id"
        " AND s.time = a.event_time AND s.status = 'tampered' WHERE a.mrn = %s",
        (plan.mrn,),
    ).fetchone()
    url = f"{api_url}/api/v1/devices/{plan.device_id}/messages/{seq}"
    status, msg = _get(url, admin_key)
    assert status == 200 and msg["verification"] == "verified" and msg["envelope"] is True
    # Anyone holding the key checks it with the bytes the API gives.
    body = base64.b64decode(msg["payload_base64"])
    assert json.loads(body)["status"] == "tampered"
    assert wire.sign(key, msg["topic"], body) == msg["sig"]
    ok = _verify([plan.device_id, str(seq)])
    assert ok.returncode == 0 and "verified" in ok.stdout
    wrong = _verify([plan.device_id, str(seq), "--key-hex", secrets.token_hex(32)])
    assert wrong.returncode == 1 and "bad_signature" in wrong.stdout

    # One byte changed in the database: the evidence no longer verifies.
    db.execute(
        "UPDATE raw_messages SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1)"
        " WHERE device_id = %s AND seq = %s",
        (plan.device_id, seq),
    )
    db.commit()
    status, msg = _get(url, admin_key)
    assert status == 200 and msg["verification"] == "bad_signature"
    tampered = _verify([plan.device_id, str(seq)])
    assert tampered.returncode == 1 and "bad_signature" in tampered.stdout
    status, _ = _get(f"{api_url}/api/v1/devices/{plan.device_id}/messages/999999", admin_key)
    assert status == 404


def test_replayed_forged_and_moved_envelopes_over_mqtt311(settings, db, ingest) -> None:
    token = secrets.token_hex(4).upper()
    dev, other = f"ENVA{token}", f"ENVB{token}"
    key = secrets.token_bytes(32)
    for d in (dev, other):
        devices.register(db, d, "tracker", key)
    db.commit()
    from transit.provision import sync_broker

    sync_broker(db, settings)
    time.sleep(0.5)
    topic = wire.topic_for(dev, "telemetry")
    t = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    def body(seq: int, lat: float) -> bytes:
        return json.dumps(
            {"v": 1, "seq": seq, "fixes": [{"t": t, "lat": lat, "lon": 103.8}]}
        ).encode()

    good = wire.envelope(key, topic, body(1, 1.3))
    env = json.loads(good)
    forged = json.dumps({**env, "body": base64.b64encode(body(2, 1.4)).decode()}).encode()
    # Signed for the other device's topic, published on this one's.
    moved = wire.envelope(key, wire.topic_for(other, "telemetry"), body(3, 1.5))
    c = make_client(settings, dev, device_password(settings.device_secret, dev), version="3.1.1")
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    try:
        assert connected.wait(10)
        for payload in (good, good, forged, moved):  # the second is a replay
            c.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()

    reasons = _wait(
        db,
        "SELECT reason, sig FROM dead_letters WHERE topic = %s ORDER BY id",
        (topic,),
        [("bad_signature", env["sig"]), ("bad_signature", json.loads(moved)["sig"])],
    )
    assert reasons == [("bad_signature", env["sig"]), ("bad_signature", json.loads(moved)["sig"])]
    rows = db.execute("SELECT seq, lat FROM fixes WHERE device_id = %s", (dev,)).fetchall()
    assert rows == [(1, 1.3)]
    kept = db.execute(
        "SELECT seq, payload, envelope FROM raw_messages WHERE device_id = %s", (dev,)
    ).fetchall()
    assert [(s, bytes(p), e) for s, p, e in kept] == [(1, body(1, 1.3), True)]


def test_transit_edge_on_mqtt311_signs_in_envelopes_that_ingest_stores(
    settings, db, ingest, tmp_path
) -> None:
    from firmware_sim.serial_fw import VirtualPort, nmea_epoch
    from tests.integration.test_edge import Edge
    from transit.provision import sync_broker

    dev = f"EDGEV{secrets.token_hex(4).upper()}"
    key = secrets.token_bytes(32)
    devices.register(db, dev, "edge", key)
    db.commit()
    sync_broker(db, settings)
    time.sleep(0.5)
    gps = VirtualPort(tmp_path / "gps")
    # The reader says online once its ports are open: a serial line keeps no bytes
    # for a reader that is not there yet.
    online = threading.Event()
    sub = make_client(settings, settings.mqtt_admin_user, settings.mqtt_admin_password)
    sub.on_message = lambda c, u, m: None if m.retain else online.set()
    sub.on_connect = lambda c, *a: c.subscribe(wire.topic_for(dev, "status"), qos=1)
    sub.connect(settings.mqtt_host, settings.mqtt_port)
    sub.loop_start()
    edge = Edge(dev, [gps.path], tmp_path / "outbox.sqlite")
    edge.args += ["--mqtt-version", "3.1.1", "--key-hex", key.hex()]
    time.sleep(0.5)
    edge.start()
    try:
        assert online.wait(20)
        time.sleep(0.3)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        for i in range(10):
            gps.write(nmea_epoch(t0 + timedelta(seconds=i), 1.3 + i * 1e-4, 103.8, 60.0, 45.0))
        kept = _wait(
            db,
            "SELECT count(*), count(*) FILTER (WHERE envelope) FROM raw_messages"
            " WHERE device_id = %s",
            (dev,),
            [(10, 10)],
        )
        assert kept == [(10, 10)]
        (n,) = db.execute("SELECT count(*) FROM fixes WHERE device_id = %s", (dev,)).fetchone()
        assert n == 10
    finally:
        edge.stop()
        sub.disconnect()
        sub.loop_stop()
        gps.close()
    for topic, payload, sig in db.execute(
        "SELECT topic, payload, sig FROM raw_messages WHERE device_id = %s", (dev,)
    ).fetchall():
        wire.verify(key, topic, bytes(payload), sig)


def test_transit_sim_sign_on_mqtt311_provisions_keys_and_sends_envelopes(
    settings, db, ingest, close_transits
) -> None:
    seed = 9731  # trucks of their own: TRK973100000
    plan = fleet_plan(acts_network(), 1, seed=seed, incidents=False, traffic=False)[0]
    close_transits.append(plan.mrn)
    (since,) = db.execute("SELECT now()").fetchone()
    db.commit()
    argv = ["sim", "--trucks", "1", "--seed", str(seed), "--provision", "--sign"]
    argv += ["--mqtt-version", "3.1.1", "--no-incidents", "--fast", "--steps", "3"]
    subprocess.run([sys.executable, "-m", "transit.cli", *argv], cwd=ROOT, check=True, timeout=120)
    (key,) = db.execute(
        "SELECT hmac_key FROM devices WHERE device_id = %s", (plan.device_id,)
    ).fetchone()
    assert key is not None  # given one by --provision --sign
    sql = (
        "SELECT count(*), count(*) FILTER (WHERE envelope) FROM raw_messages"
        " WHERE device_id = %s AND received_at >= %s AND topic LIKE '%%/telemetry'"
    )
    assert _wait(db, sql, (plan.device_id, since), [(3, 3)]) == [(3, 3)]
    for topic, payload, sig in db.execute(
        "SELECT topic, payload, sig FROM raw_messages WHERE device_id = %s AND received_at >= %s",
        (plan.device_id, since),
    ).fetchall():
        wire.verify(bytes(key), topic, bytes(payload), sig)


def test_the_store_writes_each_message_once_and_none_in_the_future(db) -> None:
    from transit.db import messages

    dev = f"RAW{secrets.token_hex(4).upper()}"
    topic = wire.topic_for(dev, "telemetry")
    now = datetime.now(UTC)

    def msg(seq: int, when: datetime) -> wire.SignedMessage:
        return wire.SignedMessage(dev, seq, when, topic, b'{"seq":%d}' % seq, None)

    first = [msg(1, now - timedelta(hours=1)), msg(2, now - timedelta(minutes=30))]
    with db.transaction():
        assert messages.write_messages(db, [*first, first[0]]) == 2  # a repeat in the batch
    # A redelivery beside new messages: the COPY is refused, the staging path keeps the
    # new ones and skips the one stored. One dated next year is stored as received.
    with db.transaction():
        messages.create_staging(db)
        later = [first[1], msg(3, now), msg(4, now + timedelta(days=365))]
        assert messages.write_messages(db, later) == 2
    rows = db.execute(
        "SELECT seq, time <= now() FROM raw_messages WHERE device_id = %s ORDER BY seq", (dev,)
    ).fetchall()
    db.commit()
    assert rows == [(1, True), (2, True), (3, True), (4, True)]
