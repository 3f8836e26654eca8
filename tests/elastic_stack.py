"""What the ingest membership tests share: a database and a broker of their own, worker
processes, devices publishing at QoS 1, and ways to look at slots and sessions.

Real worker processes (``transit ingest --client-id ...``), a Mosquitto of the tests'
own (a shared subscription group on the shared broker would take other tests'
messages, and their workers ours) and a database of their own, ``transit_elastic``,
made afresh for each module (the watchdog acts on every transit of its database).
Devices are real paho clients publishing at QoS 1; a message counts as sent once the
broker's PUBACK came back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psycopg
import pytest

from firmware_sim.scenario import fleet_plan
from tests.conftest import ROOT, free_port
from transit.broker import device_password
from transit.config import Settings
from transit.db import membership, transits
from transit.db.migrate import migrate
from transit.demo.stack import OwnBroker
from transit.devices import payload as wire
from transit.geofence.corridor import acts_network
from transit.model import make_mrn
from transit.mqtt import connect_properties, make_client
from transit.provision import import_geojson

DB = "transit_elastic"
DEVICES = [f"ELASTIC-D{k}" for k in range(6)]  # the scale test's
PARKED = ["ELASTIC-P0", "ELASTIC-P1"]  # the parked session test's
HELD = ["ELASTIC-H0"]  # the held-back test's
PLANS = fleet_plan(acts_network(), 1, seed=131, incidents=False, traffic=False)


def _psql(settings: Settings, db: str, *sql: str) -> None:
    port = str(urlsplit(settings.database_url).port or 5432)
    args = [a for s in sql for a in ("-c", s)]
    psql = ["psql", "-h", str(ROOT / ".run/pg"), "-p", port, "-U", "postgres", "-qAt"]
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *psql, "-v", "ON_ERROR_STOP=1", "-d", db, *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def own_stack(settings: Settings) -> Iterator[Settings]:
    """A fresh database and a broker of the caller's own; the settings that use them."""
    _psql(
        settings,
        "postgres",
        "SET client_min_messages = warning",
        f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)",
        f"CREATE DATABASE {DB} OWNER transit",
    )
    _psql(settings, DB, "CREATE EXTENSION timescaledb", "CREATE EXTENSION postgis")
    url = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{DB}"))
    port = free_port()
    own = settings.model_copy(update={"database_url": url, "mqtt_url": f"mqtt://127.0.0.1:{port}"})
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.commit()
        for dev in [*DEVICES, *PARKED, *HELD]:
            conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'tracker')", (dev,))
        conn.commit()
        import_geojson(conn, acts_network())
        # The scale test's devices each carry a transit under way, so what is stored is
        # also evaluated by the rules (rule_state's cursor says how far).
        for k, dev in enumerate(DEVICES):
            transits.declare(
                conn,
                mrn=make_mrn(26, "MY", f"ELASTICD{k:04d}"),
                tracker_id=dev,
                corridor_id="MY-TH-BKK",
                office_departure="MYKUL001",
                office_destination="THBKK001",
                countries=["MY", "TH"],
                time_limit=datetime(2100, 1, 1, tzinfo=UTC),
                status="in_transit",
            )
        conn.commit()
    broker = OwnBroker(settings.run_dir / "elastic-test", port)
    broker.start(own, [*DEVICES, *PARKED, *HELD, *(p.device_id for p in PLANS)])
    yield own
    broker.stop()


class Workers:
    """Ingest worker processes, one per slot, their stderr kept in ``logs``."""

    def __init__(self, settings: Settings, group: str, logs: Path) -> None:
        self.group = group
        self.logs = logs
        self.env = {
            **os.environ,
            "TRANSIT_DATABASE_URL": settings.database_url,
            "TRANSIT_MQTT_URL": settings.mqtt_url,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, client_id: str) -> None:
        with (self.logs / f"{client_id}.log").open("ab") as err:
            cmd = [sys.executable, "-m", "transit.cli", "ingest", "--group", self.group]
            self.procs[client_id] = subprocess.Popen(
                [*cmd, "--client-id", client_id],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def signal(self, client_id: str, sig: int) -> None:
        self.procs[client_id].send_signal(sig)

    def wait(self, client_id: str, timeout: float = 30) -> int:
        return self.procs[client_id].wait(timeout)

    def log(self, client_id: str) -> str:
        return (self.logs / f"{client_id}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(what: str, check: Any, timeout: float) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"not within {timeout:.0f} s: {what}")


def slot_states(url: str, group: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {s["client_id"]: s["state"] for s in membership.slots(conn, group)}


def running(url: str, group: str, ids: list[str]) -> bool:
    states = slot_states(url, group)
    return all(states.get(c) == "running" for c in ids)


def session_exists(settings: Settings, client_id: str) -> bool:
    """Whether the broker still holds a session for ``client_id`` (the check's own
    connection asks for none to be kept)."""
    c = make_client(
        settings, settings.mqtt_ingest_user, settings.mqtt_ingest_password, client_id=client_id
    )
    present: list[bool] = []
    c.on_connect = lambda cl, u, flags, *a: present.append(bool(flags.session_present))
    c.connect(
        settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=connect_properties(0)
    )
    c.loop_start()
    wait_for(f"connect as {client_id}", lambda: present, 10)
    c.disconnect()
    c.loop_stop()
    return present[0]


class Fleet:
    """Devices publishing telemetry at QoS 1 on their own connections; a message is
    sent when its PUBACK came back."""

    def __init__(self, settings: Settings, devices: list[str], period_s: float) -> None:
        self.period_s = period_s
        self.clients: dict[str, mqtt.Client] = {}
        self.infos: list[tuple[str, int, mqtt.MQTTMessageInfo]] = []
        for dev in devices:
            c = make_client(
                settings, dev, device_password(settings.device_secret, dev), client_id=dev
            )
            c.connect(settings.mqtt_host, settings.mqtt_port)
            c.loop_start()
            self.clients[dev] = c
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            now = datetime.now(UTC)
            for k, (dev, c) in enumerate(self.clients.items()):
                fix = wire.FixV1(t=now, lat=3.0 + k * 0.01 + seq * 1e-5, lon=101.5)
                body = wire.encode(wire.TelemetryV1(v=1, seq=seq, fixes=[fix]))
                info = c.publish(wire.topic_for(dev, "telemetry"), body, qos=1)
                self.infos.append((dev, seq, info))
            self.stop.wait(self.period_s)

    def finish(self) -> set[tuple[str, int]]:
        """Stop publishing; wait for the PUBACKs; the (device, seq) acknowledged."""
        self.stop.set()
        self.thread.join(10)
        deadline = time.monotonic() + 20
        for _, _, info in self.infos:
            if not info.is_published():
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        for c in self.clients.values():
            c.disconnect()
            c.loop_stop()
        return {(dev, seq) for dev, seq, info in self.infos if info.is_published()}


def stored(url: str, devices: list[str]) -> dict[tuple[str, int], int]:
    """How many fixes are stored for each (device, seq) of these devices."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT device_id, seq, count(*) FROM fixes WHERE device_id = ANY(%s) GROUP BY 1, 2",
            (devices,),
        ).fetchall()
    return {(r[0], int(r[1])): int(r[2]) for r in rows}


def evaluated(url: str, devices: list[str]) -> tuple[dict[str, int], int]:
    """How far the rules went on each device's transit (its cursor, the last seq
    evaluated, or skipped as lost), and how many of their messages wait beyond a gap."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursors = conn.execute(
            "SELECT device_id, last_seq FROM rule_state WHERE device_id = ANY(%s)", (devices,)
        ).fetchall()
        held = conn.execute(
            "SELECT count(*) FROM pending_messages WHERE device_id = ANY(%s)", (devices,)
        ).fetchone()
    return {r[0]: int(r[1] or 0) for r in cursors}, int(held[0] if held else 0)


def db_now(url: str) -> datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
