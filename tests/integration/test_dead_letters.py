"""Dead letters seen and replayed: real broker, a real ingest worker, the database, the
HTTP API and the command line. A message from a device registered only after it
arrived is dead-lettered; once the device is registered, a replay stores it once."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import ROOT
from transit import keys
from transit.db.devices import register as register_device
from transit.devices import payload as wire
from transit.mqtt import make_client


def call(url: str, key: str, method: str = "GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def api_url(api_module: str) -> str:
    """One API server for the module's tests."""
    return api_module


@pytest.fixture(scope="module")
def control_key(settings) -> str:
    with psycopg.connect(settings.database_url) as conn:
        key = keys.create(conn, "control_room", label="dead letter tests")
        conn.commit()
    return key


def telemetry(seq: int, n: int = 2) -> bytes:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    fixes = [
        {"t": (t0 + timedelta(seconds=10 * i)).isoformat(), "lat": 1.3 + i / 1000, "lon": 103.8}
        for i in range(n)
    ]
    return json.dumps({"v": 1, "seq": seq, "fixes": fixes}).encode()


def publish(settings, messages: list[tuple[str, bytes, str | None]]) -> None:
    """Publish as the backend's admin user: a device not registered cannot log in."""
    c = make_client(settings, settings.mqtt_admin_user, settings.mqtt_admin_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    try:
        for topic, payload, sig in messages:
            props = Properties(PacketTypes.PUBLISH)
            if sig is not None:
                props.UserProperty = ("sig", sig)
            c.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def wait_letters(db, device: str, n: int) -> list[tuple]:
    """The device's dead letters (id, reason, sig), once ingest has kept ``n``."""
    deadline = time.monotonic() + 30
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        rows = db.execute(
            "SELECT id, reason, sig FROM dead_letters WHERE device_id = %s ORDER BY id", (device,)
        ).fetchall()
        db.commit()
        if len(rows) >= n:
            break
        time.sleep(0.1)
    assert len(rows) == n, rows
    return rows


def fixes_of(db, device: str) -> list[tuple]:
    rows = db.execute(
        "SELECT seq, idx FROM fixes WHERE device_id = %s ORDER BY seq, idx", (device,)
    ).fetchall()
    db.commit()
    return rows


def late_device() -> str:
    return f"LATE{secrets.token_hex(4).upper()}"


def test_a_device_registered_late_has_its_message_replayed_through_the_api_and_stored_once(
    settings, db, ingest, api_url, admin_key, control_key
) -> None:
    dev = late_device()
    topic = wire.topic_for(dev, "telemetry")
    payload = telemetry(seq=1)
    publish(settings, [(topic, payload, None)])
    [(letter_id, reason, _)] = wait_letters(db, dev, 1)
    assert reason == "unknown_device"
    assert fixes_of(db, dev) == []

    # Visible: who sent what, and why it was refused.
    status, page = call(f"{api_url}/api/v1/dead-letters?device_id={dev}", control_key)
    assert status == 200 and page["count"] == 1
    item = page["items"][0]
    assert item["id"] == letter_id and item["topic"] == topic and item["device_id"] == dev
    assert item["reason"] == "unknown_device" and dev in item["detail"]
    assert base64.b64decode(item["raw_base64"]) == payload
    assert item["replayed_at"] is None and item["replays"] == 0

    # The cause is fixed: the device is registered (through the API).
    body = {"device_id": dev, "kind": "tracker", "signed": False}
    status, _ = call(f"{api_url}/api/v1/devices", admin_key, "POST", body)
    assert status == 201

    status, out = call(f"{api_url}/api/v1/dead-letters/{letter_id}/replay", control_key, "POST")
    assert status == 200, out
    assert out["outcome"] == "accepted" and out["rows_written"] == 2
    assert fixes_of(db, dev) == [(1, 0), (1, 1)]

    # A second replay stores nothing more.
    status, out = call(f"{api_url}/api/v1/dead-letters/{letter_id}/replay", admin_key, "POST")
    assert status == 200
    assert out["outcome"] == "accepted" and out["rows_written"] == 0
    assert fixes_of(db, dev) == [(1, 0), (1, 1)]

    status, letter = call(f"{api_url}/api/v1/dead-letters/{letter_id}", control_key)
    assert status == 200
    assert letter["replays"] == 2 and letter["replay_outcome"] == "accepted"
    assert letter["replayed_at"] is not None and letter["first_reason"] == "unknown_device"
    audited = db.execute(
        "SELECT details->>'outcome', details->>'rows_written' FROM audit_log"
        " WHERE action = 'dead_letter.replay' AND subject = %s ORDER BY id",
        (f"dead_letter:{letter_id}",),
    ).fetchall()
    assert audited == [("accepted", "2"), ("accepted", "0")]
    # A replayed old message is not the device being heard now.
    seen = db.execute("SELECT last_seen FROM devices WHERE device_id = %s", (dev,)).fetchone()
    assert seen == (None,)


def test_the_cli_lists_shows_and_replays_a_signed_message_once(settings, db, ingest) -> None:
    dev = late_device()
    key = secrets.token_bytes(32)
    topic = wire.topic_for(dev, "telemetry")
    payload = telemetry(seq=7, n=3)
    publish(settings, [(topic, payload, wire.sign(key, topic, payload))])
    [(letter_id, reason, sig)] = wait_letters(db, dev, 1)
    assert reason == "unknown_device" and sig == wire.sign(key, topic, payload)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "transit.cli", "dead-letters", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = cli("list", "--device", dev)
    assert listed.returncode == 0, listed.stderr
    assert str(letter_id) in listed.stdout and "unknown_device" in listed.stdout
    shown = cli("show", str(letter_id))
    assert shown.returncode == 0 and payload.decode() in shown.stdout

    # Registered with the key it signed with: the kept signature verifies.
    register_device(db, dev, "tracker", key)
    db.commit()
    first = cli("replay", str(letter_id))
    assert first.returncode == 0, first.stderr
    assert "accepted, 3 telemetry rows written" in first.stdout
    again = cli("replay", str(letter_id), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["rows_written"] == 0
    assert fixes_of(db, dev) == [(7, 0), (7, 1), (7, 2)]
    actors = db.execute(
        "SELECT actor FROM audit_log WHERE subject = %s", (f"dead_letter:{letter_id}",)
    ).fetchall()
    assert len(actors) == 2 and all(a[0].startswith("cli") for a in actors)
    assert cli("replay", "999999999999").returncode == 1


def test_a_replay_refused_again_keeps_the_letter_with_the_new_reason(
    settings, db, ingest, api_url, admin_key
) -> None:
    dev = late_device()
    topic = wire.topic_for(dev, "telemetry")
    publish(settings, [(topic, telemetry(seq=3), None)])
    [(letter_id, _, _)] = wait_letters(db, dev, 1)
    # Registered as a signing device: its unsigned message is still not accepted.
    register_device(db, dev, "tracker", secrets.token_bytes(32))
    db.commit()
    status, out = call(f"{api_url}/api/v1/dead-letters/{letter_id}/replay", admin_key, "POST")
    assert status == 200
    assert out["outcome"] == "refused" and out["reason"] == "unsigned"
    letter = out["dead_letter"]
    assert letter["reason"] == "unsigned" and letter["first_reason"] == "unknown_device"
    assert letter["replay_outcome"] == "refused"
    wait_letters(db, dev, 1)  # kept as it was, not written a second time
    assert fixes_of(db, dev) == []


def test_dead_letters_are_filtered_by_device_reason_and_time_and_paged(
    settings, db, ingest, api_url, control_key
) -> None:
    dev = late_device()
    before = datetime.now(UTC)
    messages = [(wire.topic_for(dev, "telemetry"), telemetry(seq=s), None) for s in (1, 2, 3)]
    messages.append((f"transit/v1/devices/{dev}/bogus", b"{}", None))
    publish(settings, messages)
    letters = wait_letters(db, dev, 4)
    url = f"{api_url}/api/v1/dead-letters?device_id={dev}"

    _, page = call(f"{url}&reason=bad_topic", control_key)
    assert [i["id"] for i in page["items"]] == [letters[3][0]]
    _, page = call(f"{url}&reason=unknown_device&limit=2", control_key)
    assert [i["id"] for i in page["items"]] == [letters[2][0], letters[1][0]]
    _, rest = call(f"{url}&reason=unknown_device&limit=2&before={page['next_before']}", control_key)
    assert [i["id"] for i in rest["items"]] == [letters[0][0]] and rest["next_before"] is None
    stamp = before.isoformat().replace("+00:00", "Z")
    _, page = call(f"{url}&to={stamp}", control_key)
    assert page["count"] == 0
    _, page = call(f"{url}&from={stamp}", control_key)
    assert page["count"] == 4
    status, body = call(f"{url}&from={stamp}&to={stamp}", control_key)
    assert status == 422 and body["detail"][0]["loc"] == ["query", "to"]
    status, body = call(f"{api_url}/api/v1/dead-letters/999999999999", control_key)
    assert status == 404
