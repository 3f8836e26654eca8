"""``transit bench ingest``: the ingest pipeline as deployed, against its references.

Everything runs on loopback, on a broker and a database of the project's own that the
benchmark starts or resets for itself: a second Mosquitto (same binary, password
file and ACL, its own port and persistence) and the ``transit_bench`` database, with
fresh tables. In one run it measures:

- ``limit_paho_noop_msg_s``: a paho subscriber that only counts, draining the same
  number of queued messages from the same broker;
- ``throughput_msg_s``: N ingest worker processes (decode, validate, corridor and rule
  checks, binary COPY, commit, then PUBACK) draining the same queued messages;
- ``limit_psql_copy_rows_s``: psql's ``\\copy`` of the same rows into a hypertable
  of the same shape;
- ``naive_msg_s``: paho callback -> pydantic -> INSERT and commit per message;
- ``latency_p50_ms`` / ``latency_p99_ms``: with the workers running, messages published
  at a steady pace, from publish to the start of the transaction that stored them;
- ``lost`` and ``duplicates``: the rows in the database against what was published.

Messages are queued before each consumer starts, so each consumer is measured alone
on the machine's two cores, and its rate is the rows' span of server timestamps.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psycopg

from firmware_sim.scenario import fleet_plan
from transit.config import Settings
from transit.db.migrate import migrate
from transit.devices import payload as wire
from transit.geofence.corridor import acts_network
from transit.mqtt import connect_properties, make_client
from transit.provision import import_geojson, provision_fleet

DEVICE_TOPICS = "transit/v1/devices/+/+"


@dataclass
class BenchConfig:
    """What to run."""

    messages: int = 20_000
    devices: int = 100
    workers: int = 2
    fixes_per_message: int = 1
    naive_messages: int = 3_000
    latency_messages: int = 3_000
    latency_rate: float = 2_000.0


def bench_settings(settings: Settings, port: int) -> Settings:
    """The settings pointing at the benchmark's broker and database."""
    parts = urlsplit(settings.database_url)
    db_url = urlunsplit(parts._replace(path="/transit_bench"))
    return settings.model_copy(
        update={"database_url": db_url, "mqtt_url": f"mqtt://127.0.0.1:{port}"}
    )


class BenchBroker:
    """A second Mosquitto with the project's users and ACL, fresh persistence."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.port = port
        self.dir = settings.run_dir / "bench" / "mosquitto"
        self.main = settings.run_dir / "mosquitto"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start with empty persistence."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "data").mkdir(parents=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    "allow_anonymous false",
                    f"password_file {self.main / 'passwd'}",
                    f"acl_file {self.main / 'acl'}",
                    f"listener {self.port} 127.0.0.1",
                    "persistence true",
                    f"persistence_location {self.dir / 'data'}/",
                    "max_queued_messages 0",
                    "max_inflight_messages 1000",
                    f"log_dest file {self.dir / 'mosquitto.log'}",
                    "user mosquitto",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mosquitto", "mosquitto")
            shutil.chown(self.dir / "data", "mosquitto", "mosquitto")
        self._launch()

    def restart(self) -> None:
        """Stop (the broker saves its sessions and queues) and start again."""
        self.stop()
        self._launch()

    def _launch(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.dir / "mosquitto.conf")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the benchmark's broker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


def _connect(
    settings: Settings, user: str, password: str, client_id: str, persistent: bool
) -> mqtt.Client:
    c = make_client(settings, user, password, client_id=client_id)
    ready = threading.Event()
    c.on_connect = lambda *a: ready.set()
    if persistent:
        c.connect(
            settings.mqtt_host,
            settings.mqtt_port,
            clean_start=False,
            properties=connect_properties(3600),
        )
    else:
        c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    if not ready.wait(10):
        raise RuntimeError(f"{client_id} could not connect")
    return c


def open_session(settings: Settings, user: str, password: str, client_id: str, group: str) -> None:
    """Create a persistent session subscribed to the device topics, then leave it."""
    c = _connect(settings, user, password, client_id, persistent=True)
    c.subscribe(f"$share/{group}/{DEVICE_TOPICS}", qos=1)[1]
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def make_messages(cfg: BenchConfig, start: datetime) -> list[tuple[str, bytes]]:
    """Simulator telemetry for ``cfg.devices`` trucks on the ACTS corridors."""
    plans = fleet_plan(acts_network(), cfg.devices, seed=97, incidents=False, traffic=False)
    trucks = [p.truck(i, interval_s=1.0) for i, p in enumerate(plans)]
    per_device = -(-cfg.messages // cfg.devices)
    out: list[tuple[str, bytes]] = []
    for k in range(per_device):
        t = start + timedelta(seconds=k * cfg.fixes_per_message)
        for truck in trucks:
            fixes: list[wire.FixV1] = []
            for j in range(cfg.fixes_per_message):
                tel, _ = truck.step(t + timedelta(seconds=j))
                if tel is not None:
                    fixes.extend(tel.fixes)
            msg = wire.TelemetryV1(v=1, seq=k + 1, fixes=fixes)
            out.append((wire.topic_for(truck.device_id, "telemetry"), wire.encode(msg)))
            if len(out) == cfg.messages:
                return out
    return out


def publish_all(settings: Settings, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker acknowledges; returns msg/s."""
    c = _connect(
        settings,
        settings.mqtt_admin_user,
        settings.mqtt_admin_password,
        f"bench-pub-{os.getpid()}",
        persistent=False,
    )
    t0 = time.perf_counter()
    infos = [c.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    rate = len(messages) / (time.perf_counter() - t0)
    c.disconnect()
    c.loop_stop()
    return rate


def drain(
    settings: Settings, client_id: str, expected: int, handle: Callable[[Any], None] | None
) -> float:
    """Resume a persistent session and take ``expected`` queued messages, handing each
    to ``handle`` (None: only count). Returns msg/s from the first to the last."""
    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal count, first, last
        if handle is not None:
            handle(msg)
        now = time.perf_counter()
        if count == 0:
            first = now
        count += 1
        last = now
        if count >= expected:
            done.set()

    c = make_client(
        settings, settings.mqtt_admin_user, settings.mqtt_admin_password, client_id=client_id
    )
    c.on_message = on_message
    c.connect(
        settings.mqtt_host,
        settings.mqtt_port,
        clean_start=False,
        properties=connect_properties(3600),
    )
    c.loop_start()
    done.wait(300)
    c.disconnect()
    c.loop_stop()
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


def reset_database(settings: Settings, cfg: BenchConfig) -> list[str]:
    """Fresh tables in ``transit_bench``; the bench's devices and transits declared."""
    with psycopg.connect(settings.database_url) as conn:
        migrate(conn)
        conn.execute(
            "TRUNCATE fixes, seal_events, raw_messages, dead_letters, alerts, transits, devices,"
            " corridors, offices, ingest_workers, ingest_slots, leases, audit_log CASCADE"
        )
        conn.commit()
        network = acts_network()
        import_geojson(conn, network)
        plans = fleet_plan(network, cfg.devices, seed=97, incidents=False, traffic=False)
        provision_fleet(conn, plans)
        return [p.device_id for p in plans]


def run_workers(
    settings: Settings, cfg: BenchConfig, expected_rows: int
) -> tuple[float, list[subprocess.Popen[bytes]]]:
    """Start the workers on the queued messages; returns rows/s when all are stored."""
    env = {
        **os.environ,
        "TRANSIT_DATABASE_URL": settings.database_url,
        "TRANSIT_MQTT_URL": settings.mqtt_url,
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "transit.cli",
                "ingest",
                "--client-id",
                f"bench-ingest-{i}",
                "--group",
                "bench",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for i in range(cfg.workers)
    ]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 600
        n = 0
        while time.monotonic() < deadline:
            n = int(conn.execute("SELECT count(*) FROM fixes").fetchone()[0])  # type: ignore[index]
            if n >= expected_rows:
                break
            time.sleep(0.1)
        span = conn.execute(
            "SELECT extract(epoch FROM max(received_at) - min(received_at))::float8,"
            " count(DISTINCT received_at) FROM fixes"
        ).fetchone()
    seconds = float(span[0]) if span and span[0] else 0.0
    batches = int(span[1]) if span else 1
    # The span runs from the first batch's start to the last batch's start: add one
    # mean batch duration so that it covers the last batch's own work.
    if batches > 1:
        seconds *= batches / (batches - 1)
    return (n / seconds if seconds > 0 else 0.0), procs


def measure_latency(
    settings: Settings, cfg: BenchConfig, devices: list[str]
) -> tuple[float, float]:
    """Publish at a steady rate with the workers running; p50 and p99 in ms."""
    c = _connect(
        settings,
        settings.mqtt_admin_user,
        settings.mqtt_admin_password,
        f"bench-lat-{os.getpid()}",
        persistent=False,
    )
    interval = 1.0 / cfg.latency_rate
    t0 = time.perf_counter()
    marker_lat = 89.0  # far from every corridor: these rows are easy to find
    for i in range(cfg.latency_messages):
        target = t0 + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        dev = devices[i % len(devices)]
        body = wire.TelemetryV1(
            v=1,
            seq=10_000_000 + i,
            fixes=[wire.FixV1(t=datetime.now(UTC), lat=marker_lat, lon=0.0)],
        )
        c.publish(wire.topic_for(dev, "telemetry"), wire.encode(body), qos=1)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = conn.execute("SELECT count(*) FROM fixes WHERE lat = %s", (marker_lat,)).fetchone()
            if n and n[0] >= cfg.latency_messages:
                break
            time.sleep(0.1)
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM"
            " (SELECT extract(epoch FROM received_at - time) * 1000 AS ms FROM fixes"
            "  WHERE lat = %s) q",
            (marker_lat,),
        ).fetchone()
    c.disconnect()
    c.loop_stop()
    return (float(row[0]), float(row[1])) if row and row[0] is not None else (0.0, 0.0)


def psql_copy(settings: Settings) -> float:
    """psql's \\copy of the stored rows into a fresh hypertable of the same shape; rows/s."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS fixes_copybench")
        conn.execute("CREATE TABLE fixes_copybench (LIKE fixes INCLUDING DEFAULTS)")
        conn.execute(
            "SELECT create_hypertable('fixes_copybench', 'time',"
            " chunk_time_interval => interval '1 day')"
        )
        conn.execute("CREATE UNIQUE INDEX ON fixes_copybench (device_id, seq, idx, time)")
        rows = conn.execute(
            "SELECT time, device_id, seq, idx, lat, lon, speed_kmh, course_deg, hdop FROM fixes"
        ).fetchall()
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as f:
        csv.writer(f).writerows(rows)
        path = f.name
    cols = "time, device_id, seq, idx, lat, lon, speed_kmh, course_deg, hdop"
    t0 = time.perf_counter()
    subprocess.run(
        [
            "psql",
            settings.database_url,
            "-qc",
            f"\\copy fixes_copybench ({cols}) FROM '{path}' CSV",
        ],
        check=True,
    )
    rate = len(rows) / (time.perf_counter() - t0)
    os.unlink(path)
    return rate


def naive(settings: Settings, count: int) -> float:
    """paho callback -> pydantic -> INSERT and commit, per message. Returns msg/s."""
    conn = psycopg.connect(settings.database_url)
    conn.execute("DROP TABLE IF EXISTS fixes_naive")
    conn.execute("CREATE TABLE fixes_naive (LIKE fixes INCLUDING DEFAULTS)")
    conn.execute("SELECT create_hypertable('fixes_naive', 'time')")
    conn.execute("CREATE UNIQUE INDEX ON fixes_naive (device_id, seq, idx, time)")
    conn.commit()

    def insert(msg: Any) -> None:
        device_id, model = wire.decode(msg.topic, msg.payload)
        assert isinstance(model, wire.TelemetryV1)
        for f in wire.fixes_of(device_id, model):
            conn.execute(
                "INSERT INTO fixes_naive (time, device_id, seq, idx, lat, lon) VALUES"
                " (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (f.time, f.device_id, f.seq, f.idx, f.lat, f.lon),
            )
        conn.commit()

    try:
        return drain(settings, "bench-naive", count, insert)
    finally:
        conn.close()


def run(settings: Settings, cfg: BenchConfig) -> dict[str, Any]:
    """The whole benchmark; returns the figures."""
    port = settings.mqtt_port + 1
    bs = bench_settings(settings, port)
    broker = BenchBroker(settings, port)
    broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        devices = reset_database(bs, cfg)
        messages = make_messages(cfg, datetime(2026, 1, 1, tzinfo=UTC))
        expected_rows = len(messages) * cfg.fixes_per_message
        admin = (bs.mqtt_admin_user, bs.mqtt_admin_password)
        open_session(bs, *admin, "bench-noop", "noop")
        for i in range(cfg.workers):
            open_session(
                bs, bs.mqtt_ingest_user, bs.mqtt_ingest_password, f"bench-ingest-{i}", "bench"
            )
        publish_rate = publish_all(bs, messages)
        noop = drain(bs, "bench-noop", len(messages), None)
        throughput_rows, procs = run_workers(bs, cfg, expected_rows)
        throughput = throughput_rows / cfg.fixes_per_message
        with psycopg.connect(bs.database_url) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (device_id, seq, idx)) FROM fixes"
            ).fetchone()
        stored, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
        p50, p99 = measure_latency(bs, cfg, devices)
        copy_rate = psql_copy(bs)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(20)
        procs = []
        open_session(bs, *admin, "bench-naive", "naive")
        naive_msgs = messages[: cfg.naive_messages]
        publish_all(bs, naive_msgs)
        naive_rate = naive(bs, len(naive_msgs))
        return {
            "messages": len(messages),
            "fixes_per_message": cfg.fixes_per_message,
            "workers": cfg.workers,
            "devices": cfg.devices,
            "throughput_msg_s": round(throughput, 1),
            "throughput_rows_s": round(throughput_rows, 1),
            "limit_paho_noop_msg_s": round(noop, 1),
            "ratio_vs_paho_noop": round(throughput / noop, 3) if noop else None,
            "limit_psql_copy_rows_s": round(copy_rate, 1),
            "ratio_rows_vs_psql_copy": round(throughput_rows / copy_rate, 3) if copy_rate else None,
            "naive_msg_s": round(naive_rate, 1),
            "speedup_vs_naive": round(throughput / naive_rate, 2) if naive_rate else None,
            "publish_msg_s": round(publish_rate, 1),
            "lost": expected_rows - distinct,
            "duplicates": stored - distinct,
            "latency_p50_ms": round(p50, 1),
            "latency_p99_ms": round(p99, 1),
            "latency_rate_msg_s": cfg.latency_rate,
            "latency_note": "publish to the start of the transaction that stored the row",
        }
    finally:
        for p in procs:
            p.kill()
        broker.stop()
