"""The project's Mosquitto: no anonymous access, and a device writes only under its own id."""

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from transit.broker import device_password
from transit.db.devices import register as register_device
from transit.mqtt import make_client
from transit.provision import sync_broker


def _connect(settings, user, password):
    c = (
        make_client(settings, user, password)
        if user
        else mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
        )
    )
    result = {}
    done = threading.Event()

    def on_connect(cl, ud, fl, reason, pr):
        result["reason"] = reason
        done.set()

    c.on_connect = on_connect
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    assert done.wait(10)
    return c, result["reason"]


def test_anonymous_client_is_refused(settings) -> None:
    c, reason = _connect(settings, None, None)
    c.loop_stop()
    assert reason.is_failure


def test_device_cannot_publish_under_another_devices_id(settings, db) -> None:
    for dev in ("ACL-A", "ACL-B"):
        register_device(db, dev)
    db.commit()
    sync_broker(db, settings)
    time.sleep(0.5)  # the broker re-reads its files on SIGHUP
    got: list[str] = []
    sub, reason = _connect(settings, settings.mqtt_admin_user, settings.mqtt_admin_password)
    assert not reason.is_failure
    sub.on_message = lambda cl, ud, m: got.append(m.topic)
    sub.subscribe("transit/v1/devices/+/telemetry", qos=1)
    time.sleep(0.3)
    a, reason = _connect(settings, "ACL-A", device_password(settings.device_secret, "ACL-A"))
    assert not reason.is_failure
    a.publish("transit/v1/devices/ACL-B/telemetry", b"forged", qos=1).wait_for_publish(5)
    a.publish("transit/v1/devices/ACL-A/telemetry", b"own", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while "transit/v1/devices/ACL-A/telemetry" not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    for c in (a, sub):
        c.disconnect()
        c.loop_stop()
    assert got == ["transit/v1/devices/ACL-A/telemetry"]


def test_device_with_a_wrong_password_is_refused(settings) -> None:
    c, reason = _connect(settings, "ACL-A", "not-the-password")
    c.loop_stop()
    assert reason.is_failure


def test_concurrent_registrations_in_several_processes_all_reach_the_password_file(
    settings, tmp_path
) -> None:
    """Two API processes behind HAProxy register devices at once: each rewrites the
    password file; none may lose another's device or trip over its temporary file."""
    import secrets
    import subprocess
    import sys

    import psycopg

    run_dir = tmp_path / "run"
    (run_dir / "mosquitto").mkdir(parents=True)
    token = secrets.token_hex(3).upper()
    ids = [f"SYNC{token}{i}" for i in range(6)]
    script = (
        "import sys, psycopg\n"
        "from transit.config import get_settings\n"
        "from transit.db.devices import register\n"
        "from transit.provision import sync_broker\n"
        "s = get_settings()\n"
        "with psycopg.connect(s.database_url) as conn:\n"
        "    for d in sys.argv[1:]:\n"
        "        register(conn, d, 'tracker', None)\n"
        "        conn.commit()\n"
        "        sync_broker(conn, s, reload=False)\n"
    )
    env = {**__import__("os").environ, "TRANSIT_RUN_DIR": str(run_dir)}
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", script, *ids[i::3]], env=env) for i in range(3)
        ]
        assert [p.wait(120) for p in procs] == [0, 0, 0]
        users = {
            line.split(":", 1)[0]
            for line in (run_dir / "mosquitto" / "passwd").read_text().splitlines()
        }
        assert set(ids) <= users
        leftovers = [p.name for p in (run_dir / "mosquitto").iterdir() if p.suffix == ".tmp"]
        assert leftovers == []
    finally:
        with psycopg.connect(settings.database_url) as conn:
            conn.execute("DELETE FROM devices WHERE device_id = ANY(%s)", (ids,))


def test_a_broker_that_dies_is_started_again_by_its_supervisor(settings) -> None:
    """Mosquitto 2.0.11 may segfault after a reload: the stack's broker comes back."""
    import os
    import signal

    d = settings.run_dir / "mosquitto"
    pid = int((d / "mosquitto.pid").read_text())
    os.kill(pid, signal.SIGSEGV)
    deadline = time.monotonic() + 15
    new = pid
    while time.monotonic() < deadline:
        try:
            new = int((d / "mosquitto.pid").read_text())
            os.kill(new, 0)
        except (OSError, ValueError):
            new = pid
        if new != pid:
            break
        time.sleep(0.1)
    assert new != pid, "the broker was not started again"
    while time.monotonic() < deadline:
        try:
            c, reason = _connect(settings, settings.mqtt_ingest_user, settings.mqtt_ingest_password)
            c.loop_stop()
            c.disconnect()
            if not reason.is_failure:
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError("the broker started again does not accept its users")
    assert "started again" in (d / "supervisor.log").read_text()
