"""The project's Mosquitto: no anonymous access, and a device writes only under its own id."""

import contextlib
import threading
import time

import paho.mqtt.client as mqtt
import pytest
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


def test_a_broker_that_dies_is_started_again_by_its_supervisor(tmp_path) -> None:
    """Mosquitto 2.0.11 may segfault after a reload: scripts/supervise-mosquitto.sh (the
    stack's broker runs under it) starts it again; told to stop, it stops. On a broker
    of the test's own: killing the shared one would disturb the tests after it."""
    import os
    import shutil
    import signal
    import socket
    import subprocess

    from tests.conftest import ROOT
    from transit.demo.stack import free_port, wait_for_port

    d = tmp_path / "mq"
    d.mkdir()
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {d / 'mosquitto.log'}\nuser mosquitto\n"
    )
    if os.geteuid() == 0:
        for p in (tmp_path, d):
            p.chmod(0o755)
        shutil.chown(d, "mosquitto", "mosquitto")
    sup = subprocess.Popen(["bash", str(ROOT / "scripts" / "supervise-mosquitto.sh"), str(d)])
    try:
        assert wait_for_port(port, time.monotonic() + 10), "the broker did not start"
        first = int((d / "mosquitto.pid").read_text())
        os.kill(first, signal.SIGSEGV)
        deadline = time.monotonic() + 15
        again = first
        while again == first and time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(OSError, ValueError):
                again = int((d / "mosquitto.pid").read_text())
        assert again != first, "the broker was not started again"
        assert wait_for_port(port, deadline), "the broker started again does not listen"
        assert "started again" in (d / "supervisor.log").read_text()
        (d / "stopping").touch()
        os.kill(again, signal.SIGTERM)
        assert sup.wait(15) == 0
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", port), 0.5),
        ):
            pass
    finally:
        if sup.poll() is None:
            (d / "stopping").touch()
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((d / "mosquitto.pid").read_text()), signal.SIGTERM)
            sup.wait(15)
