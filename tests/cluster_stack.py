"""The clustered stack of issue 14, as the cluster kill test drives it.

The broker is the three RabbitMQ nodes of scripts/cluster-broker.sh; ingest is two
``transit ingest`` processes reading its quorum queue over AMQP (TRANSIT_AMQP_URL); the
database is the one the settings name, with a database of the test's own. The trucks
are the detection catalogue's (every incident scenario, the near misses, clean
transits), published over MQTT 3.1.1 to every node in turn, at a pace, so that the
kills fall inside the run. A run reports what was published, acknowledged (PUBACK),
stored, lost and stored twice, and the alerts raised.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from firmware_sim.catalogue import STEP, Scenario, catalogue, clean_fleet
from firmware_sim.fleet import Fleet
from firmware_sim.scenario import TruckPlan
from tests.catalogue_db import provision_catalogue
from transit.broker import device_password
from transit.cluster.broker import Management, Node
from transit.config import Settings

STEPS = 240  # 40 minutes of event time per truck
CLEAN = 21
PACE_S = 0.25  # wall seconds per step: a run publishes for about a minute
DRAIN_S = 180.0

Alert = tuple[str, str, str, datetime]  # mrn, type, condition key, event time


@dataclass
class Kill:
    """One failure injected during a run: at ``at`` (a share of the run), ``act()``."""

    what: str
    at: float
    act: Callable[[], str]  # does it; returns what it did (printed)


@dataclass
class StackRun:
    """What one run of the catalogue through the clustered stack counted."""

    published: int = 0
    acknowledged: int = 0
    stored: int = 0  # distinct (device, seq) in the database
    lost: int = 0  # acknowledged, never stored
    duplicated: int = 0  # rows beyond the first of one (device, seq, fix)
    alerts: set[Alert] = field(default_factory=set)
    killed: list[str] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)  # per kill: until the next message stored
    seconds: float = 0.0
    drain_s: float = 0.0  # from the end of publishing to everything acknowledged stored

    def line(self) -> str:
        """The run as one printable line."""
        return (
            f"published {self.published}, acknowledged {self.acknowledged}, stored"
            f" {self.stored}, lost {self.lost}, duplicated {self.duplicated}; alerts"
            f" {len(self.alerts)}; run {self.seconds:.0f} s, stored {self.drain_s:.1f} s after"
            " publishing ended"
        )


def scenarios() -> list[Scenario]:
    """The detection catalogue."""
    return catalogue()


def plans() -> list[TruckPlan]:
    """Every truck of a run: the catalogue's, then the clean ones."""
    return [s.plan for s in scenarios()] + clean_fleet(CLEAN)


def register_devices(settings: Settings, nodes: list[Node]) -> None:
    """Every truck may log in to the cluster (RabbitMQ users, over the management API)."""
    admin = Management(nodes, settings.mqtt_admin_user, settings.mqtt_admin_password)
    for p in plans():
        admin.register_device(p.device_id, device_password(settings.device_secret, p.device_id))


def reset(settings: Settings, nodes: list[Node]) -> None:
    """The ingest queue emptied, and the test's database emptied and provisioned for a
    run."""
    Management(nodes, settings.mqtt_admin_user, settings.mqtt_admin_password).purge()
    provision_catalogue(settings, scenarios(), plans())


def start_workers(settings: Settings, n: int, prefix: str) -> list[subprocess.Popen[bytes]]:
    """``n`` ingest processes on the cluster's quorum queue."""
    env = {
        **os.environ,
        "TRANSIT_DATABASE_URL": settings.database_url,
        "TRANSIT_MQTT_URL": settings.mqtt_url,
        "TRANSIT_AMQP_URL": settings.amqp_url,
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "transit.cli", "ingest", "--client-id", f"{prefix}-{i}"],
            env=env,
        )
        for i in range(n)
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL what did not stop in 30 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _stored(conn: psycopg.Connection[Any]) -> set[tuple[str, int]]:
    rows = conn.execute(
        "SELECT device_id, seq FROM fixes UNION SELECT device_id, seq FROM seal_events"
        " UNION SELECT device_id, seq FROM filtered_fixes"
    ).fetchall()
    return {(r[0], int(r[1])) for r in rows}


def _duplicated(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT (SELECT count(*) - count(DISTINCT (device_id, seq, idx)) FROM fixes)"
        " + (SELECT count(*) - count(DISTINCT (device_id, seq)) FROM seal_events)"
    ).fetchone()
    return int(row[0]) if row else 0


def _connect_retrying(url: str, until: float) -> psycopg.Connection[Any]:
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() > until:
                raise
            time.sleep(0.5)


class Progress(threading.Thread):
    """Samples how many messages are stored, twice a second, through whatever failover:
    when after a moment the count next grew."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.done.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM fixes) + (SELECT count(*) FROM seal_events)"
                ).fetchone()
                self.samples.append((time.monotonic(), int(row[0]) if row else 0))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
            self.done.wait(0.5)
        if conn is not None:
            conn.close()

    def next_growth(self, after: float) -> float | None:
        """Seconds from ``after`` to the first sample with more stored than before it."""
        before = max((n for t, n in self.samples if t <= after), default=0)
        return next((t - after for t, n in self.samples if t > after and n > before), None)


def run(
    settings: Settings,
    nodes: list[Node],
    start: datetime,
    kills: list[Kill],
    workers: int = 2,
    ready: Callable[[], None] | None = None,
) -> StackRun:
    """The catalogue through the clustered stack, event time from ``start``, with the
    failures of ``kills`` injected on time; what it made of it. ``ready()`` is called
    once the database is provisioned and the workers started, before publishing."""
    out = StackRun()
    t0 = time.monotonic()
    reset(settings, nodes)
    procs = start_workers(settings, workers, f"stack{os.getpid()}")
    if ready is not None:
        ready()
    progress = Progress(settings.database_url)
    progress.start()
    kill_times: list[tuple[str, float]] = []
    trucks = []
    for i, p in enumerate(plans()):
        truck = p.truck(3000 + i, STEP)
        truck.noise_m = 15.0
        trucks.append(truck)
    fleet = Fleet(settings, trucks, realtime=False, mqtt_version="3.1.1")
    fleet.pace_s = PACE_S
    try:
        fleet.connect()
        publishing = threading.Thread(target=fleet.run, kwargs={"steps": STEPS, "start": start})
        began = time.monotonic()
        publishing.start()
        length = STEPS * PACE_S
        for kill in sorted(kills, key=lambda k: k.at):
            wait = began + kill.at * length - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            kill_times.append((kill.what, time.monotonic()))
            out.killed.append(f"{kill.what}: {kill.act()}")
        publishing.join()
        ended = time.monotonic()
        deadline = ended + DRAIN_S
        # A message is a (device, seq): the catalogue repeats some on purpose.
        sent = {(d, q) for d, mids in fleet.sent.items() for q in mids.values()}
        while not sent <= fleet.acked and time.monotonic() < deadline:
            fleet.flush(1.0)  # what a failover left in paho's queue goes out again
            time.sleep(0.2)
        out.published = len(sent)
        acked = set(fleet.acked)
        out.acknowledged = len(acked)
        conn = _connect_retrying(settings.database_url, deadline)
        with conn:
            stored = _stored(conn)
            while not acked <= stored and time.monotonic() < deadline:
                time.sleep(0.5)
                stored = _stored(conn)
            out.drain_s = time.monotonic() - ended
            time.sleep(2.0)  # a late repeat, if any, still counts
            out.stored = len(_stored(conn))
            out.lost = len(acked - _stored(conn))
            out.duplicated = _duplicated(conn)
            out.alerts = {
                (r[0].strip(), r[1], r[2], r[3])
                for r in conn.execute("SELECT mrn, type, cond_key, event_time FROM alerts")
            }
    finally:
        fleet.close()
        stop(procs)
        progress.done.set()
        progress.join(10)
    for what, at in kill_times:
        gap = progress.next_growth(at)
        out.stalls.append(
            f"{what}: next message stored {gap:.1f} s after the kill"
            if gap is not None
            else f"{what}: nothing stored after the kill"
        )
    out.seconds = time.monotonic() - t0
    return out


def problems(alerts: set[Alert]) -> list[str]:
    """Where the alerts differ from what the catalogue expects."""
    out = []
    by_mrn: dict[str, list[str]] = {}
    for mrn, kind, _, _ in alerts:
        by_mrn.setdefault(mrn, []).append(kind)
    for s in scenarios():
        kinds = sorted(by_mrn.get(s.plan.mrn, []))
        want = [] if s.expect is None else [s.expect.value]
        if kinds != want:
            out.append(f"{s.name}: {kinds}, expected {want}")
    for p in clean_fleet(CLEAN):
        if p.mrn in by_mrn:
            out.append(f"clean {p.device_id}: {sorted(by_mrn[p.mrn])}")
    return out
