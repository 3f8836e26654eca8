"""``transit bench ingest``: the ingest pipeline as deployed, against its references.

Everything runs on loopback, on a broker and a database of the benchmark's own
(:mod:`transit.localstack`): a second Mosquitto and the ``transit_bench`` database,
with fresh tables. In one run it measures:

- ``limit_paho_noop_msg_s``: a paho subscriber that only counts, draining the same
  number of queued messages from the same broker;
- ``throughput_msg_s``: N ingest worker processes (decode, validate, lock the transits'
  rule state, corridor and rule checks in each device's seq order, binary COPY,
  commit, then PUBACK) draining the same queued messages; ``by_workers`` gives it for
  1, 2 and 4 workers side by side, each against its own no-op reference, with where
  the workers' time went (per message, by phase) and how often a truck's messages
  came before their predecessor (held) or passed from one worker to another;
- ``limit_psql_copy_rows_s``: psql's ``\\copy`` of the same rows into a hypertable
  of the same shape;
- ``naive_msg_s``: paho callback -> pydantic -> INSERT and commit per message;
- ``latency_p50_ms`` / ``latency_p99_ms``: with the workers running, messages published
  at a steady pace, from publish to the start of the transaction that stored them;
- ``lost`` and ``duplicates``: the rows in the database against what was published.

Messages are queued before each consumer starts, so each consumer is measured alone
on the machine's cores, and its rate is the rows' span of server timestamps. The
trucks report in a shuffled order each second, as independent devices do: the broker's
round robin then hands each truck's messages to every worker in turn.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from firmware_sim.scenario import fleet_plan
from transit.config import Settings
from transit.db.migrate import migrate
from transit.demo.stack import free_port
from transit.devices import payload as wire
from transit.geofence.corridor import acts_network
from transit.localstack import (
    BenchBroker,
    bench_settings,
    connect,
    drain,
    open_session,
    publish_all,
    start_workers,
    stop_workers,
    worker_stats,
)
from transit.provision import import_geojson, provision_fleet

PHASES = ("decode", "discover", "lock", "read", "plan", "rules", "write", "risk", "commit")


@dataclass
class BenchConfig:
    """What to run."""

    messages: int = 20_000
    devices: int = 100
    workers: int = 2  # the run whose latency, loss and headline figures are reported
    fixes_per_message: int = 1
    naive_messages: int = 3_000
    latency_messages: int = 3_000
    latency_rate: float = 2_000.0
    worker_counts: tuple[int, ...] = (1, 2, 4)  # measured side by side


def make_messages(cfg: BenchConfig, start: datetime) -> list[tuple[str, bytes]]:
    """Simulator telemetry for ``cfg.devices`` trucks on the ACTS corridors, each
    second's reports in a shuffled order."""
    plans = fleet_plan(acts_network(), cfg.devices, seed=97, incidents=False, traffic=False)
    trucks = [p.truck(i, interval_s=1.0) for i, p in enumerate(plans)]
    rng = random.Random(97)
    per_device = -(-cfg.messages // cfg.devices)
    out: list[tuple[str, bytes]] = []
    for k in range(per_device):
        t = start + timedelta(seconds=k * cfg.fixes_per_message)
        step = []
        for truck in trucks:
            fixes: list[wire.FixV1] = []
            for j in range(cfg.fixes_per_message):
                tel, _ = truck.step(t + timedelta(seconds=j))
                if tel is not None:
                    fixes.extend(tel.fixes)
            msg = wire.TelemetryV1(v=1, seq=k + 1, fixes=fixes)
            step.append((wire.topic_for(truck.device_id, "telemetry"), wire.encode(msg)))
        rng.shuffle(step)
        out += step
    # Whole seconds only: every truck has sent as many (the latency run goes on from there).
    return out[: cfg.messages - cfg.messages % cfg.devices or cfg.messages]


def reset_database(settings: Settings, cfg: BenchConfig) -> list[str]:
    """Fresh tables in ``transit_bench``; the bench's devices and transits declared."""
    with psycopg.connect(settings.database_url) as conn:
        migrate(conn)
        conn.execute(
            "TRUNCATE fixes, seal_events, filtered_fixes, raw_messages, dead_letters, alerts,"
            " transits, devices, corridors, offices, ingest_workers, ingest_slots, leases,"
            " audit_log, rule_state, pending_messages CASCADE"
        )
        conn.commit()
        network = acts_network()
        import_geojson(conn, network)
        plans = fleet_plan(network, cfg.devices, seed=97, incidents=False, traffic=False)
        provision_fleet(conn, plans)
        return [p.device_id for p in plans]


def run_workers(settings: Settings, procs: list[Any], expected_rows: int) -> float:
    """Rows/s of the started workers on the queued messages, once all are stored."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 600
        n = 0
        while time.monotonic() < deadline:
            n = int(conn.execute("SELECT count(*) FROM fixes").fetchone()[0])  # type: ignore[index]
            if n >= expected_rows or any(p.poll() is not None for p in procs):
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
    return n / seconds if seconds > 0 else 0.0


def profile(settings: Settings, messages: int) -> dict[str, Any]:
    """Where the workers' time went (microseconds per message, by phase, all workers
    together: lock is waiting for another worker's transaction), and how a truck's
    messages were ordered (held: came before their predecessor)."""
    deadline = time.monotonic() + 15  # the workers save their counters once a second
    stats = worker_stats(settings)
    while sum(s.get("messages_in", 0) for s in stats) < messages and time.monotonic() < deadline:
        time.sleep(0.3)
        stats = worker_stats(settings)
    spent = {p: sum(s.get("phase_ms", {}).get(p, 0.0) for s in stats) for p in PHASES}
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT sum(version), sum(handoffs) FROM rule_state").fetchone()
    evaluated, handed = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
    return {
        "us_per_msg": {p: round(ms * 1000 / messages, 1) for p, ms in spent.items()},
        "held_share": round(sum(s.get("held", 0) for s in stats) / messages, 3),
        "handoff_share": round(handed / evaluated, 3) if evaluated else 0.0,
    }


def measure_latency(
    settings: Settings, cfg: BenchConfig, devices: list[str]
) -> tuple[float, float]:
    """Publish at a steady rate with the workers running; p50 and p99 in ms."""
    c = connect(
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
            # each device's next seqs, after the messages of the throughput run
            seq=-(-cfg.messages // len(devices)) + 1 + i // len(devices),
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


def _one(
    bs: Settings, cfg: BenchConfig, messages: list[tuple[str, bytes]], workers: int
) -> tuple[dict[str, Any], list[Any], list[str]]:
    """Fresh tables, the messages queued, the no-op subscriber, then ``workers``
    workers on the same messages. Returns the figures, the workers (still running)
    and the devices."""
    devices = reset_database(bs, cfg)
    admin = (bs.mqtt_admin_user, bs.mqtt_admin_password)
    group = f"bench{workers}"
    open_session(bs, *admin, f"bench-noop-{workers}", f"noop{workers}")
    for i in range(workers):
        open_session(bs, bs.mqtt_ingest_user, bs.mqtt_ingest_password, f"{group}-{i}", group)
    publish_rate = publish_all(bs, messages)
    noop = drain(bs, f"bench-noop-{workers}", len(messages), None)
    procs = start_workers(bs, workers, group)
    rows = run_workers(bs, procs, len(messages) * cfg.fixes_per_message)
    rate = rows / cfg.fixes_per_message
    figures = {
        "throughput_msg_s": round(rate, 1),
        "throughput_rows_s": round(rows, 1),
        "limit_paho_noop_msg_s": round(noop, 1),
        "ratio_vs_paho_noop": round(rate / noop, 3) if noop else None,
        "publish_msg_s": round(publish_rate, 1),
        **profile(bs, len(messages)),
    }
    return figures, procs, devices


def run(settings: Settings, cfg: BenchConfig) -> dict[str, Any]:
    """The whole benchmark; returns the figures."""
    port = free_port()  # the bench's own broker, wherever the stack's listeners are
    bs = bench_settings(settings, port)
    broker = BenchBroker(settings, port)
    broker.start()
    procs: list[Any] = []
    try:
        messages = make_messages(cfg, datetime(2026, 1, 1, tzinfo=UTC))
        expected_rows = len(messages) * cfg.fixes_per_message
        by_workers: dict[str, dict[str, Any]] = {}
        headline: dict[str, Any] = {}
        for n in sorted({*cfg.worker_counts, cfg.workers}):
            figures, procs, devices = _one(bs, cfg, messages, n)
            by_workers[str(n)] = figures
            if n == cfg.workers:
                with psycopg.connect(bs.database_url) as conn:
                    row = conn.execute(
                        "SELECT count(*), count(DISTINCT (device_id, seq, idx)) FROM fixes"
                    ).fetchone()
                stored, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
                p50, p99 = measure_latency(bs, cfg, devices)
                headline = {
                    **figures,
                    "lost": expected_rows - distinct,
                    "duplicates": stored - distinct,
                    "latency_p50_ms": round(p50, 1),
                    "latency_p99_ms": round(p99, 1),
                }
            stop_workers(procs)
            procs = []
        copy_rate = psql_copy(bs)
        admin = (bs.mqtt_admin_user, bs.mqtt_admin_password)
        open_session(bs, *admin, "bench-naive", "naive")
        naive_msgs = messages[: cfg.naive_messages]
        publish_all(bs, naive_msgs)
        naive_rate = naive(bs, len(naive_msgs))
        rows = headline["throughput_rows_s"]
        return {
            "messages": len(messages),
            "fixes_per_message": cfg.fixes_per_message,
            "workers": cfg.workers,
            "devices": cfg.devices,
            **{k: v for k, v in headline.items() if k not in ("us_per_msg",)},
            "limit_psql_copy_rows_s": round(copy_rate, 1),
            "ratio_rows_vs_psql_copy": round(rows / copy_rate, 3) if copy_rate else None,
            "naive_msg_s": round(naive_rate, 1),
            "speedup_vs_naive": round(headline["throughput_msg_s"] / naive_rate, 2)
            if naive_rate
            else None,
            "latency_rate_msg_s": cfg.latency_rate,
            "latency_note": "publish to the start of the transaction that stored the row",
            "by_workers": by_workers,
        }
    finally:
        stop_workers(procs, timeout=5)
        broker.stop()
