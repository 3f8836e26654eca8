"""Edge reader with the real pieces: firmware on pseudo-terminals -> `transit edge` ->
the project's Mosquitto -> a subscriber. Broker outage, reader SIGKILL, unplugged port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.serial_fw import VirtualPort, nmea_epoch, seal_report
from tests.conftest import ROOT
from transit.db.devices import register as register_device
from transit.devices.eseal import SealFrame
from transit.model import SealStatus
from transit.mqtt import connect_properties, make_client
from transit.provision import sync_broker

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Subscriber:
    """Everything the broker delivers for one device, as (seq, kind, payload)."""

    def __init__(self, settings, device_id: str) -> None:
        self.got: list[tuple[int, str, dict]] = []
        self.online = 0
        # A persistent session, so that what the broker queued for the subscriber
        # across a broker restart is delivered: the test must not lose what the edge sent.
        self.client = make_client(
            settings,
            settings.mqtt_admin_user,
            settings.mqtt_admin_password,
            client_id=f"sub-{device_id}",
        )
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: (
            c.subscribe(f"transit/v1/devices/{device_id}/+", qos=1),
            ready.set(),
        )
        self.client.on_message = self._on_message
        # Never a clean start: Mosquitto 2.0 saves across its own restart only the
        # sessions that were opened without one.
        self.client.connect(
            settings.mqtt_host,
            settings.mqtt_port,
            clean_start=False,
            properties=connect_properties(600),
        )
        self.client.loop_start()
        assert ready.wait(10)
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg) -> None:
        kind = msg.topic.rsplit("/", 1)[1]
        if kind == "status" and json.loads(msg.payload)["state"] == "online" and not msg.retain:
            self.online += 1
        elif kind != "status":
            body = json.loads(msg.payload)
            self.got.append((body["seq"], kind, body))

    def unique(self) -> list[tuple[int, str, dict]]:
        """Deliveries with duplicates (same seq) removed, in seq order."""
        by_seq = {}
        for seq, kind, body in list(self.got):
            assert by_seq.setdefault(seq, (seq, kind, body)) == (seq, kind, body), "seq reused"
        return [by_seq[s] for s in sorted(by_seq)]

    def wait_for(self, n: int, timeout: float = 30) -> list[tuple[int, str, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.unique()) < n:
            time.sleep(0.05)
        return self.unique()

    def wait_online(self, count: int) -> None:
        """Wait for the edge's ``count``-th online announcement: its ports are open then."""
        deadline = time.monotonic() + 20
        while self.online < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.online >= count
        time.sleep(0.3)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Edge:
    def __init__(self, device_id: str, ports: list[Path], outbox: Path) -> None:
        self.args = [
            sys.executable,
            "-m",
            "transit.cli",
            "edge",
            "--device-id",
            device_id,
            "--outbox",
            str(outbox),
        ]
        for p in ports:
            self.args += ["--serial", str(p)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=ROOT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("the edge reader did not stop on SIGTERM") from None


@pytest.fixture
def rig(settings, db, tmp_path):
    device_id = f"EDGE{time.monotonic_ns() % 10**8}"
    register_device(db, device_id, "edge")
    db.commit()
    sync_broker(db, settings)
    time.sleep(0.5)
    gps, seals = VirtualPort(tmp_path / "gps"), VirtualPort(tmp_path / "seal")
    sub = Subscriber(settings, device_id)
    edge = Edge(device_id, [gps.path, seals.path], tmp_path / "outbox.sqlite")
    edge.start()
    # A serial line keeps no bytes for a reader that is not there (pyserial flushes
    # the input on open), so the firmware starts talking once the reader listens.
    sub.wait_online(1)
    yield device_id, gps, seals, sub, edge
    edge.stop()
    sub.close()
    gps.close()
    seals.close()


def fix_at(i: int) -> tuple[datetime, float, float]:
    return T0 + timedelta(seconds=i), 1.3 + i * 1e-4, 103.8 + i * 2e-4


def send_fixes(port: VirtualPort, start: int, count: int, garbage: bool = False) -> None:
    for i in range(start, start + count):
        t, lat, lon = fix_at(i)
        data = nmea_epoch(t, lat, lon, 60.0, 45.0)
        if garbage and i % 7 == 0:
            data = b"\x00\xffnoise$GPXXX,bad*00\r\n" + data
        port.write(data)


def seal_frame(i: int) -> SealFrame:
    status = SealStatus.TAMPERED if i == 3 else SealStatus.SEALED
    return SealFrame("ESL1", 1000 + i % 2, status, i, 90, T0 + timedelta(seconds=i), 1.3, 103.8)


def check(got, fixes: range, seals: range) -> None:
    tel = [b for _, kind, b in got if kind == "telemetry"]
    sl = [b for _, kind, b in got if kind == "seal"]
    times = [datetime.fromisoformat(b["fixes"][0]["t"]) for b in tel]
    assert times == [fix_at(i)[0] for i in fixes]
    for b, i in zip(tel, fixes, strict=True):
        _, lat, lon = fix_at(i)
        assert abs(b["fixes"][0]["lat"] - lat) < 1e-6 and abs(b["fixes"][0]["lon"] - lon) < 1e-6
    assert [b["counter"] for b in sl] == list(seals)
    assert [b["seal_id"] for b in sl] == [seal_frame(i).seal_id for i in seals]
    assert sl[list(seals).index(3)]["status"] == "tampered" if 3 in seals else True
    seqs = [s for s, _, _ in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_readings_from_pty_firmware_reach_a_subscriber_exactly_and_in_order(rig) -> None:
    _, gps, seals, sub, _ = rig
    send_fixes(gps, 0, 60, garbage=True)
    frames = [seal_report(seal_frame(i)) for i in range(10)]
    # Garbage, and a start marker with no frame behind it, between whole frames.
    blob = b"junk" + frames[0] + b"\xe5\x5e\x01" + b"".join(frames[1:])
    for k in range(0, len(blob), 7):  # half frames: arrive in small pieces
        seals.write(blob[k : k + 7])
        time.sleep(0.001)
    got = sub.wait_for(70)
    assert len(got) == 70
    check(got, range(60), range(10))


def test_broker_outage_mid_run_loses_nothing(rig) -> None:
    _, gps, seals, sub, _ = rig
    send_fixes(gps, 0, 20)
    assert len(sub.wait_for(20)) == 20
    subprocess.run(["bash", str(ROOT / "scripts/services.sh"), "stop-mq"], check=True)
    send_fixes(gps, 20, 30)  # read and queued on disk while the broker is down
    for i in range(5):
        seals.write(seal_report(seal_frame(i)))
    time.sleep(1.0)
    subprocess.run(
        ["bash", str(ROOT / "scripts/services.sh"), "start-mq"], check=True, capture_output=True
    )
    got = sub.wait_for(55, timeout=40)
    check(got, range(50), range(5))


def test_reader_killed_mid_run_and_restarted_loses_nothing(rig) -> None:
    _, gps, _, sub, edge = rig
    send_fixes(gps, 0, 100)
    time.sleep(0.3)
    edge.kill()  # SIGKILL: no chance to flush or say goodbye
    edge.start()
    sub.wait_online(2)
    send_fixes(gps, 100, 40)
    got = sub.wait_for(140, timeout=40)
    check(got, range(140), range(0))


def test_unplugged_port_is_reopened_and_the_other_port_never_stops(rig) -> None:
    _, gps, seals, sub, _ = rig
    send_fixes(gps, 0, 5)
    assert len(sub.wait_for(5)) == 5
    gps.unplug()
    for i in range(4):  # the seal port goes on while the GNSS port is out
        seals.write(seal_report(seal_frame(i)))
    assert len(sub.wait_for(9)) == 9
    gps.plug()
    # Like a receiver, the firmware keeps talking; what it says before the reader has
    # reopened the port is not heard. From the first fix heard on, none is lost.
    i = 5
    while len(sub.unique()) == 9:
        assert i < 200, "the reader never reopened the port"
        send_fixes(gps, i, 1)
        i += 1
        time.sleep(0.1)
    first = datetime.fromisoformat(sub.unique()[9][2]["fixes"][0]["t"])
    first_i = int((first - T0).total_seconds())
    send_fixes(gps, i, 5)
    got = sub.wait_for(9 + (i + 5 - first_i), timeout=30)
    tel = [b for _, k, b in got if k == "telemetry"]
    assert [datetime.fromisoformat(b["fixes"][0]["t"]) for b in tel] == [
        fix_at(j)[0] for j in [*range(5), *range(first_i, i + 5)]
    ]
    assert [b["counter"] for _, k, b in got if k == "seal"] == [0, 1, 2, 3]
