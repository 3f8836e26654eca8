"""Retention on the real TimescaleDB (Apache-2 build): whole chunks are dropped, never
one holding telemetry of a transit not closed or under enquiry; the ingest worker
runs it by itself; doctor shows sizes and growth.

Dropping chunks is table-wide, so these tests run in their own database,
``transit_scratch`` (made by scripts/services.sh), never in the shared test one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.conftest import ROOT
from transit import retention
from transit.config import Settings
from transit.db.migrate import migrate
from transit.model import make_mrn
from transit.retention import Range, Window, droppable

NOW = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def at(day: int, hour: int = 12) -> datetime:
    """Noon (or ``hour``) of day ``day`` of January 2026 (past 31: February)."""
    return datetime(2026, 1, 1, hour, tzinfo=UTC) + (day - 1) * DAY


@pytest.fixture(scope="module")
def scratch_settings(settings: Settings) -> Settings:
    url = urlunsplit(urlsplit(settings.database_url)._replace(path="/transit_scratch"))
    return settings.model_copy(update={"database_url": url})


@pytest.fixture
def scratch(scratch_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """The scratch database, migrated and emptied, with one office and one corridor."""
    with psycopg.connect(scratch_settings.database_url) as conn:
        migrate(conn)
        conn.execute(
            "TRUNCATE fixes, seal_events, raw_messages, alerts, transit_events, webhook_outbox,"
            " transits, seals, devices, corridors, offices, audit_log, dead_letters CASCADE"
        )
        conn.execute(
            "INSERT INTO offices (ref, name, country, roles, lon, lat)"
            " VALUES ('MYKUL001', 'Kuala Lumpur', 'MY', '{departure,destination}', 101.7, 3.1)"
        )
        conn.execute(
            "INSERT INTO corridors (id, name, width_m, route, countries) VALUES ('C1', 'C1',"
            ' 1000, \'{"type": "LineString", "coordinates": [[101.7, 3.1], [101.8, 3.2]]}\','
            " '{MY}')"
        )
        conn.commit()
        yield conn


def add_transit(
    conn, serial: str, tracker: str, status: str, declared: datetime, closed: datetime | None
) -> str:
    mrn = make_mrn(26, "MY", serial)
    conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'tracker')", (tracker,))
    conn.execute(
        "INSERT INTO transits (mrn, status, tracker_id, corridor_id, office_departure,"
        " office_destination, countries, time_limit, declared_at, closed_at)"
        " VALUES (%s, %s, %s, 'C1', 'MYKUL001', 'MYKUL001', '{MY}', %s, %s, %s)",
        (mrn, status, tracker, declared + 5 * DAY, declared, closed),
    )
    return mrn


def add_fixes(conn, device: str, times: list[datetime]) -> None:
    conn.cursor().executemany(
        "INSERT INTO fixes (time, device_id, seq, idx, lat, lon)"
        " VALUES (%s, %s, %s, 0, 3.1, 101.7)",
        [(t, device, i) for i, t in enumerate(times)],
    )
    conn.cursor().executemany(
        "INSERT INTO seal_events (time, device_id, seq, seal_id, status, counter)"
        " VALUES (%s, %s, %s, 'S1', 'sealed', 1)",
        [(t, device, i) for i, t in enumerate(times)],
    )
    # and the messages that carried them, as signed (by message time, as ingest keeps them)
    conn.cursor().executemany(
        "INSERT INTO raw_messages (time, device_id, seq, topic, payload)"
        " VALUES (%s, %s, %s, 't', '\\x7b7d')",
        [(t, device, i) for i, t in enumerate(times)],
    )


def days_left(conn, table: str = "fixes") -> list[int]:
    """The January-based day numbers that still have a chunk."""
    rows = conn.execute(
        "SELECT range_start FROM timescaledb_information.chunks"
        " WHERE hypertable_name = %s ORDER BY 1",
        (table,),
    ).fetchall()
    return [(r[0] - datetime(2026, 1, 1, tzinfo=UTC)).days + 1 for r in rows]


def fill_two_months(conn) -> None:
    """One fix and one seal event a day, 1 January to 28 February, from a truck of none."""
    add_fixes(conn, "BACKGROUND", [at(d) for d in range(1, 60)])


def test_ranges_to_drop_cut_out_every_protected_window() -> None:
    w = [
        Window("A", "closed", at(5), at(7), enquiry=True),
        Window("B", "closed", at(6), at(9), enquiry=True),
        Window("C", "closed", at(20), at(21), enquiry=True),
    ]
    assert droppable(at(30), w) == [
        Range(None, at(5)),
        Range(at(9), at(20)),
        Range(at(21), at(30)),
    ]
    # An open window protects everything from its start.
    assert droppable(at(30), [*w, Window("D", "in_transit", at(15), None)]) == [
        Range(None, at(5)),
        Range(at(9), at(15)),
    ]
    assert droppable(at(30), []) == [Range(None, at(30))]
    assert droppable(at(3), w) == [Range(None, at(3))]


def test_chunks_older_than_the_retention_with_only_closed_transits_data_are_dropped(
    scratch,
) -> None:
    fill_two_months(scratch)
    mrn = add_transit(scratch, "RETCLOSED001", "RET-CLOSED", "closed", at(3), at(6))
    add_fixes(scratch, "RET-CLOSED", [at(3), at(4), at(5)])
    scratch.commit()

    report = retention.run(scratch, 30, NOW)
    scratch.commit()

    cutoff = NOW - 30 * DAY  # 30 January
    assert report.cutoff == cutoff and report.held_by == []
    kept = list(range(30, 60))
    for table in ("fixes", "seal_events", "raw_messages"):
        assert days_left(scratch, table) == kept, table
        assert len(report.dropped[table]) == 29, table
    n = scratch.execute("SELECT count(*) FROM fixes WHERE device_id = 'RET-CLOSED'").fetchone()
    assert n == (0,)
    audit = scratch.execute(
        "SELECT actor, details->>'chunks_dropped' FROM audit_log"
        " WHERE action = 'telemetry.retention'"
    ).fetchall()
    assert audit == [("retention", "87")]
    assert mrn  # the closed transit itself stays: only telemetry goes


def test_a_chunk_holding_an_open_transits_fixes_is_kept(scratch) -> None:
    fill_two_months(scratch)
    mrn = add_transit(scratch, "RETOPEN00001", "RET-OPEN", "in_transit", at(10, 8), None)
    add_fixes(scratch, "RET-OPEN", [at(10), at(11), at(12)])
    scratch.commit()

    report = retention.run(scratch, 30, NOW)
    scratch.commit()

    # Days 1 to 9 go; from the declaration on (day 10, 07:00) nothing does.
    assert days_left(scratch) == list(range(10, 60))
    assert days_left(scratch, "raw_messages") == list(range(10, 60))
    n = scratch.execute("SELECT count(*) FROM fixes WHERE device_id = 'RET-OPEN'").fetchone()
    assert n == (3,)
    assert [w.mrn for w in report.held_by] == [mrn]


def test_an_overdue_transits_fixes_are_kept_and_so_are_a_closed_ones_under_enquiry(
    scratch,
) -> None:
    fill_two_months(scratch)
    late = add_transit(scratch, "RETLATE00001", "RET-LATE", "overdue", at(20), None)
    add_fixes(scratch, "RET-LATE", [at(20), at(21)])
    # Went overdue (an enquiry was opened), then arrived and was closed.
    enquired = add_transit(scratch, "RETENQ000001", "RET-ENQ", "closed", at(5, 0), at(7))
    scratch.execute(
        "INSERT INTO transit_events (mrn, kind, actor, details)"
        " VALUES (%s, 'overdue', 'ingest', '{\"enquiry\": \"opened\"}')",
        (enquired,),
    )
    add_fixes(scratch, "RET-ENQ", [at(5), at(6), at(7)])
    scratch.commit()

    report = retention.run(scratch, 30, NOW)
    scratch.commit()

    # Kept: days 4 (an hour before the declaration at midnight) to 7 for the transit
    # under enquiry, and day 20 on for the overdue one; days 1 to 3 and 8 to 19 go.
    assert days_left(scratch) == [4, 5, 6, 7, *range(20, 60)]
    for device, n in (("RET-LATE", 2), ("RET-ENQ", 3)):
        got = scratch.execute("SELECT count(*) FROM fixes WHERE device_id = %s", (device,))
        assert got.fetchone() == (n,)
    assert {w.mrn: w.enquiry for w in report.held_by} == {enquired: True, late: True}


def test_a_dry_run_lists_the_chunks_and_drops_nothing(scratch, scratch_settings) -> None:
    now = scratch.execute("SELECT now()").fetchone()[0]
    add_fixes(scratch, "BACKGROUND", [now - 40 * DAY, now - 20 * DAY, now])
    scratch.commit()
    env = {**os.environ, "TRANSIT_DATABASE_URL": scratch_settings.database_url}
    command = ["retention", "run", "--dry-run", "--json", "--days", "30"]
    proc = subprocess.run(
        [sys.executable, "-m", "transit.cli", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["dry_run"] and len(out["dropped"]["fixes"]) == 1
    assert len(days_left(scratch)) == 3


def test_the_ingest_watchdog_worker_runs_the_retention_by_itself(scratch, scratch_settings) -> None:
    from transit import bootstrap
    from transit.ingest.worker import WorkerConfig
    from transit.mqtt import make_client

    now = scratch.execute("SELECT now()").fetchone()[0]
    add_fixes(scratch, "BACKGROUND", [now - 40 * DAY, now - DAY])
    scratch.commit()
    assert len(days_left(scratch)) == 2
    cfg = WorkerConfig(client_id="transit-retention-test", group="retention-test")
    worker = bootstrap.ingest_worker(
        scratch_settings.model_copy(update={"retention_days": 30}), cfg
    )
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(days_left(scratch)) != 1:
            scratch.commit()
            time.sleep(0.2)
    finally:
        worker.stop()
        runner.join(10)
        # Leave no session behind on the shared broker for this client id.
        c = make_client(
            scratch_settings,
            scratch_settings.mqtt_ingest_user,
            scratch_settings.mqtt_ingest_password,
            client_id=cfg.client_id,
        )
        connected = threading.Event()
        c.on_connect = lambda *_: connected.set()
        c.connect(scratch_settings.mqtt_host, scratch_settings.mqtt_port, clean_start=True)
        c.loop_start()
        connected.wait(10)
        c.disconnect()
        c.loop_stop()
    scratch.commit()
    assert len(days_left(scratch)) == 1
    n = scratch.execute("SELECT count(*) FROM fixes").fetchone()
    assert n == (1,)


def test_doctor_json_shows_table_sizes_and_growth_per_day(scratch, scratch_settings) -> None:
    now = scratch.execute("SELECT now()").fetchone()[0]
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # 100 fixes in the last hour; 50 a day on the three whole days before yesterday.
    add_fixes(scratch, "FRESH", [now - timedelta(seconds=30 * i + 1) for i in range(100)])
    old = [day0 - k * DAY + timedelta(minutes=20 * i) for k in (2, 3, 4) for i in range(50)]
    add_fixes(scratch, "OLD", old)
    scratch.commit()
    env = {
        **os.environ,
        "TRANSIT_DATABASE_URL": scratch_settings.database_url,
        "TRANSIT_RETENTION_DAYS": "3",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "transit.cli", "doctor", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    db = json.loads(proc.stdout)["database"]
    tables = db["storage"]["tables"]
    fixes, transits = tables["fixes"], tables["transits"]
    size = scratch.execute("SELECT hypertable_size('fixes')").fetchone()[0]
    assert fixes["hypertable"] and fixes["bytes"] == size > 0
    total = scratch.execute("SELECT pg_total_relation_size('transits')").fetchone()[0]
    assert not transits["hypertable"] and transits["bytes"] == total
    assert fixes["rows_last_24h"] == 100 and tables["seal_events"]["rows_last_24h"] == 100
    assert fixes["chunks"] >= 4 and fixes["bytes_last_24h"] > 0
    assert fixes["bytes_per_day"] > 0 and fixes["days_measured"] >= 3
    assert db["storage"]["total_bytes"] >= size
    # What the retention would drop now: the day four days back (three days are kept),
    # of fixes, seal events and the messages kept as signed.
    assert db["retention"]["days"] == 3 and db["retention"]["chunks_due"] == 3
    assert len(days_left(scratch)) == fixes["chunks"]  # doctor dropped nothing
