"""The same alerts from one ingest worker or several (issue 13, points 1 and 2).

The detection catalogue (every incident scenario, the near misses, clean transits) is
published over MQTT by its simulated trucks, one client each, QoS 1, event time run
ahead; 1, then 2, then 4 ``transit ingest`` processes take it from a shared
subscription. Mosquitto's ``$share`` is round robin, so one truck's messages reach
every worker in turn. Each run must give the same alerts (type, condition and event
time), the same filtered fixes, the catalogue's expected alerts and nothing on the
clean transits; and the rule state must show that trucks were handed between workers,
or the test proved nothing. On a broker and a database of its own (``transit_scaling``),
so that nothing else consumes its messages or sees its transits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from firmware_sim.catalogue import STEP, Scenario, catalogue, clean_fleet
from firmware_sim.fleet import Fleet
from firmware_sim.scenario import TruckPlan
from tests.catalogue_db import provision_catalogue
from transit.config import Settings
from transit.demo.stack import OwnBroker, free_port
from transit.localstack import open_session

STEPS = 240  # 40 minutes of event time per truck
CLEAN = 21
RUN_TIMEOUT_S = 180.0

Alert = tuple[str, str, str, datetime]  # mrn, type, condition key, event time


@dataclass
class Run:
    workers: int
    alerts: set[Alert]
    filtered: set[tuple[str, int, int, str]]
    handoffs: dict[str, int]  # MRN -> batches evaluated by another worker than before
    messages_in: dict[str, int]  # worker -> messages it took


@pytest.fixture(scope="module")
def scaling(settings: Settings) -> Iterator[Settings]:
    """Settings for a broker of the test's own (every truck may log in) and the
    ``transit_scaling`` database."""
    work = Path(tempfile.mkdtemp(prefix="scaling-", dir=settings.run_dir))
    work.chmod(0o755)  # the broker's own user reads its files under it
    broker = OwnBroker(work, free_port())
    url = urlunsplit(urlsplit(settings.database_url)._replace(path="/transit_scaling"))
    own = settings.model_copy(
        update={"database_url": url, "mqtt_url": f"mqtt://127.0.0.1:{broker.port}"}
    )
    broker.start(own, [p.device_id for p in _plans()])
    try:
        yield own
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _scenarios() -> list[Scenario]:
    return catalogue()


def _plans() -> list[TruckPlan]:
    return [s.plan for s in _scenarios()] + clean_fleet(CLEAN)


def _reset(settings: Settings, scenarios: list[Scenario], plans: list[TruckPlan]) -> None:
    provision_catalogue(settings, scenarios, plans)


def _start_workers(settings: Settings, n: int, group: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TRANSIT_DATABASE_URL": settings.database_url,
        "TRANSIT_MQTT_URL": settings.mqtt_url,
    }
    ids = [f"{group}-{i}" for i in range(n)]
    # Sessions first: what is published before a worker subscribes waits in its share.
    for cid in ids:
        open_session(settings, settings.mqtt_ingest_user, settings.mqtt_ingest_password, cid, group)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "transit.cli", "ingest", "--client-id", cid, "--group", group],
            env=env,
        )
        for cid in ids
    ]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _stored(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(distinct messages stored, messages held)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM (SELECT device_id, seq FROM fixes"
        "  UNION SELECT device_id, seq FROM seal_events"
        "  UNION SELECT device_id, seq FROM filtered_fixes) s),"
        " (SELECT count(*) FROM pending_messages)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_group(settings: Settings, workers: int, start: datetime) -> Run:
    """The catalogue through ``workers`` ingest processes, event time from ``start``;
    what they made of it."""
    scenarios = _scenarios()
    plans = _plans()
    _reset(settings, scenarios, plans)
    group = f"scale{workers}x{os.getpid()}"
    procs = _start_workers(settings, workers, group)
    try:
        trucks = []
        for i, p in enumerate(plans):
            truck = p.truck(3000 + i, STEP)
            truck.noise_m = 15.0
            trucks.append(truck)
        fleet = Fleet(settings, trucks, realtime=False)
        fleet.connect()
        try:
            fleet.run(steps=STEPS, start=start)
        finally:
            fleet.close()
        expected = sum(t.seq for t in trucks)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            stored, held = _stored(conn)
            while (stored, held) != (expected, 0) and time.monotonic() < deadline:
                assert all(p.poll() is None for p in procs), "an ingest worker exited"
                time.sleep(0.5)
                stored, held = _stored(conn)
            assert (stored, held) == (expected, 0), f"{stored} of {expected} stored, {held} held"
            alerts = {
                (r[0].strip(), r[1], r[2], r[3])
                for r in conn.execute("SELECT mrn, type, cond_key, event_time FROM alerts")
            }
            filtered = {
                (r[0], int(r[1]), int(r[2]), r[3])
                for r in conn.execute("SELECT device_id, seq, idx, reason FROM filtered_fixes")
            }
            handoffs = {
                r[0].strip(): int(r[1])
                for r in conn.execute("SELECT mrn, handoffs FROM rule_state")
            }
            taken = {
                r[0]: int(r[1])
                for r in conn.execute(
                    "SELECT worker_id, (stats->>'messages_in')::int FROM ingest_workers"
                )
            }
    finally:
        _stop(procs)
    return Run(workers, alerts, filtered, handoffs, taken)


def _problems(run: Run, scenarios: list[Scenario], clean: list[TruckPlan]) -> list[str]:
    """Where the run's alerts differ from what the catalogue expects."""
    out = []
    by_mrn: dict[str, list[str]] = {}
    for mrn, kind, _, _ in run.alerts:
        by_mrn.setdefault(mrn, []).append(kind)
    for s in scenarios:
        kinds = sorted(by_mrn.get(s.plan.mrn, []))
        want = [] if s.expect is None else [s.expect.value]
        if kinds != want:
            out.append(f"{run.workers} workers, {s.name}: {kinds}, expected {want}")
    for p in clean:
        if p.mrn in by_mrn:
            out.append(f"{run.workers} workers, clean {p.device_id}: {sorted(by_mrn[p.mrn])}")
    return out


@pytest.mark.timeout(900)
def test_the_catalogue_through_the_broker_gives_the_same_alerts_with_1_2_and_4_workers(
    scaling: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios = _scenarios()
    clean = clean_fleet(CLEAN)
    # One event time for every run, ending before now even on a drifting clock (2 s a
    # report ahead): the future filter, on the wall clock, must not depend on the pace.
    start = datetime.now(UTC) - timedelta(seconds=(STEP + 2) * STEPS + 120)
    runs = [run_group(scaling, n, start) for n in (1, 2, 4)]
    with capsys.disabled():
        for r in runs:
            moved = sum(1 for h in r.handoffs.values() if h)
            print(
                f"\n{r.workers} workers: {len(r.alerts)} alerts, {len(r.filtered)} filtered"
                f" fixes, messages per worker {sorted(r.messages_in.values())},"
                f" transits handed between workers {moved} of {len(r.handoffs)}"
                f" ({sum(r.handoffs.values())} hand-offs)"
            )
    assert [p for r in runs for p in _problems(r, scenarios, clean)] == []
    one = runs[0]
    assert sum(one.handoffs.values()) == 0
    for r in runs[1:]:
        # One truck's messages did land on more than one worker, for most trucks.
        assert sum(1 for h in r.handoffs.values() if h) > len(r.handoffs) // 2
        assert r.alerts == one.alerts, (r.workers, r.alerts ^ one.alerts)
        assert r.filtered == one.filtered, (r.workers, r.filtered ^ one.filtered)


def _publish_as(settings: Settings, device: str, messages: list[tuple[int, datetime]]) -> None:
    """Telemetry from ``device`` (one fix at its route's start each), QoS 1, as sent."""
    from transit.broker import device_password
    from transit.devices import payload as wire
    from transit.mqtt import make_client

    plan = next(p for p in _plans() if p.device_id == device)
    lon, lat = plan.route[0]
    c = make_client(settings, device, device_password(settings.device_secret, device))
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    try:
        for seq, t in messages:
            fix = wire.FixV1(t=t, lat=lat, lon=lon, speed_kmh=0.0)
            body = wire.encode(wire.TelemetryV1(v=1, seq=seq, fixes=[fix]))
            c.publish(wire.topic_for(device, "telemetry"), body, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def _wait(conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...], want: Any) -> Any:
    deadline = time.monotonic() + 60
    got = None
    while time.monotonic() < deadline:
        got = conn.execute(sql, args).fetchone()
        if got == want:
            break
        time.sleep(0.2)
    return got


@pytest.mark.timeout(300)
def test_a_gap_that_never_fills_is_passed_over_and_its_message_evaluated_late(
    scaling: Settings,
) -> None:
    _reset(scaling, _scenarios(), _plans())
    device = clean_fleet(CLEAN)[0].device_id
    procs = _start_workers(scaling, 1, f"gap{os.getpid()}")
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    try:
        # seq 3 is lost on the way: 4 and 5 wait for it, then go on without it.
        _publish_as(scaling, device, [(s, t0 + timedelta(seconds=10 * s)) for s in (1, 2, 4, 5)])
        with psycopg.connect(scaling.database_url, autocommit=True) as conn:
            cursor = "SELECT last_seq, skipped FROM rule_state WHERE device_id = %s"
            assert _wait(conn, cursor, (device,), (5, [[3, 3]])) == (5, [[3, 3]])
            stored = "SELECT array_agg(seq ORDER BY seq) FROM fixes WHERE device_id = %s"
            assert conn.execute(stored, (device,)).fetchone() == ([1, 2, 4, 5],)
            # 4 and 5 were held before the gap was passed (the counters are saved each second)
            held = "SELECT sum((stats->>'held')::int) FROM ingest_workers WHERE %s"
            assert _wait(conn, held, (True,), (2,)) == (2,)
            # The lost message comes after all: evaluated late, once, and the gap is closed.
            _publish_as(scaling, device, [(3, t0 + timedelta(seconds=30))])
            assert _wait(conn, cursor, (device,), (5, [])) == (5, [])
            assert conn.execute(stored, (device,)).fetchone() == ([1, 2, 3, 4, 5],)
            assert conn.execute("SELECT count(*) FROM pending_messages").fetchone() == (0,)
    finally:
        _stop(procs)
