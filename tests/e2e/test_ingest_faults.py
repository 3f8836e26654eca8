"""Ingest under faults, bounded and on loopback: 100,000 messages while a worker is
SIGKILLed every few seconds and restarted, the broker restarted once and PostgreSQL
restarted once. At the end the database holds every fix published, exactly once.

It runs on the benchmark's own broker and the ``transit_bench`` database, so nothing
else is disturbed but the shared PostgreSQL server's restart."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from tests.conftest import ROOT
from transit.bench.ingest import BenchConfig, reset_database
from transit.broker import device_password
from transit.db.devices import register as register_device
from transit.edge.outbox import Outbox
from transit.edge.reader import EdgeConfig, Publisher
from transit.localstack import BenchBroker, bench_settings, open_session
from transit.provision import sync_broker

MESSAGES = 100_000
DEVICES = 4


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _services(action: str) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts/services.sh"), action], check=True, capture_output=True
    )


def test_100k_messages_through_worker_kills_and_broker_and_database_restarts(
    settings, db, tmp_path, capsys
) -> None:
    port = settings.mqtt_port + 2
    bs = bench_settings(settings, port)
    devices = reset_database(bs, BenchConfig(devices=DEVICES))
    for dev in devices:  # the broker's password file comes from the main database
        register_device(db, dev)
    db.commit()
    sync_broker(db, settings, reload=True)
    broker = BenchBroker(settings, port)
    broker.dir = settings.run_dir / "faults" / "mosquitto"
    broker.start()

    # The workers' sessions exist before the first message: a broker drops what is
    # published to a group that has no subscriber yet.
    for i in range(2):
        open_session(
            bs, bs.mqtt_ingest_user, bs.mqtt_ingest_password, f"transit-ingest-{i}", "faults"
        )
    env = {**os.environ, "TRANSIT_DATABASE_URL": bs.database_url, "TRANSIT_MQTT_URL": bs.mqtt_url}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "transit.cli", "ingest", "--workers", "2", "--group", "faults"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    publishers: list[threading.Thread] = []
    outboxes: list[Outbox] = []
    kills = 0
    try:
        t0 = datetime(2026, 2, 1, tzinfo=UTC)
        per_device = MESSAGES // DEVICES
        for k, dev in enumerate(devices):
            box = Outbox(tmp_path / f"{dev}.sqlite")
            box.put_many(
                [
                    (
                        "telemetry",
                        {
                            "fixes": [
                                {
                                    "t": (t0 + timedelta(seconds=i)).isoformat(),
                                    "lat": 3.0 + k * 0.1 + i * 1e-6,
                                    "lon": 101.5,
                                }
                            ]
                        },
                    )
                    for i in range(per_device)
                ]
            )
            outboxes.append(box)
            cfg = EdgeConfig(
                device_id=dev,
                password=device_password(bs.device_secret, dev),
                ports=[],
                outbox_path=tmp_path / f"{dev}.sqlite",
            )
            pub = Publisher(bs, cfg, box)
            th = threading.Thread(target=pub.run, args=(stop,), daemon=True)
            th.start()
            publishers.append(th)

        rng = random.Random(4)
        start = time.monotonic()
        broker_restarted = pg_restarted = False
        # Chaos while the messages are being published (bounded to three minutes) ...
        while time.monotonic() < start + 180:
            time.sleep(4)
            elapsed = time.monotonic() - start
            workers = _children(supervisor.pid)
            if workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills += 1
            if not broker_restarted and elapsed > 6:
                broker.restart()
                broker_restarted = True
            if not pg_restarted and elapsed > 14:
                _services("stop-pg")
                time.sleep(1)
                _services("start-pg")
                pg_restarted = True
            pending = sum(b.pending() for b in outboxes)
            print(f"t={elapsed:.0f}s pending={pending} kills={kills}", flush=True)
            if pending == 0 and broker_restarted and pg_restarted:
                break
        # ... then, with every message acknowledged by the broker, the workers catch up.
        catch_up = time.monotonic() + 120
        count = 0
        while time.monotonic() < catch_up and count < MESSAGES:
            time.sleep(1)
            with psycopg.connect(bs.database_url, autocommit=True) as conn:
                count = int(conn.execute("SELECT count(*) FROM fixes").fetchone()[0])
            print(f"stored={count}", flush=True)
        # Let the last redeliveries land, then count for good.
        time.sleep(2)
        with psycopg.connect(bs.database_url, autocommit=True) as conn:
            total, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT (device_id, seq)) FROM fixes"
            ).fetchone()
            per_dev = dict(
                conn.execute("SELECT device_id, count(*) FROM fixes GROUP BY 1").fetchall()
            )
    finally:
        stop.set()
        for th in publishers:
            th.join(10)
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(30)
        broker.stop()
        for b in outboxes:
            b.close()
    with capsys.disabled():
        print(
            f"\nfaults: {MESSAGES} published, {total} stored, {distinct} distinct, "
            f"{kills} worker kills, broker and PostgreSQL restarted once each"
        )
    assert broker_restarted and pg_restarted and kills >= 3
    assert per_dev == dict.fromkeys(devices, per_device)
    assert (total, distinct) == (MESSAGES, MESSAGES)
