"""`transit demo --check`: the demo's whole path from an empty database, as `make test`
runs it (scripts/democheck.sh: a fresh database, a broker of the check's own)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from firmware_sim.scenario import fleet_plan
from transit.config import Settings
from transit.geofence.corridor import acts_network, load_geojson

ROOT = Path(__file__).resolve().parents[2]
DB = "transit_democheck_test"
OK = re.compile(
    r"demo check: ok in [\d.]+ s: (\d+) declared, (\d+) released, (\d+) fixes stored,"
    r" (\d+) departed, (\d+) alerts"
)


def test_trucks_stand_at_their_office_of_departure_until_they_drive_off() -> None:
    network = acts_network()
    offices = {o.ref: o for o in load_geojson(network)[1]}
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for plan in fleet_plan(network, 8, seed=1, depart_after_s=30):
        truck = plan.truck(seed=1, interval_s=10)
        office = offices[plan.office_departure]
        seals = truck.arm_seals(start)
        parked = [truck.step(start + timedelta(seconds=10 * k))[0] for k in (1, 2)]
        assert {s.status for s in seals} == {"sealed"}
        for telemetry in parked:
            assert telemetry is not None
            fix = telemetry.fixes[-1]
            assert fix.speed_kmh == 0
            assert office.contains(fix.lon, fix.lat)
        moving = [truck.step(start + timedelta(seconds=10 * k))[0] for k in range(3, 12)]
        last = moving[-1].fixes[-1] if moving[-1] else None
        assert last is not None
        assert last.speed_kmh > 0
        assert not office.contains(last.lon, last.lat)  # it has left the office's zone
        # The injected incidents come after the wait (truck 7's seal cut: 30 s later).
        assert all(i.at_s >= 30 for i in plan.incidents if i.kind != "parked")


def _fresh_check(*args: str, db: str = DB) -> subprocess.CompletedProcess[str]:
    """scripts/democheck.sh: drop and create the database, then run the check."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts/democheck.sh"), *args],
        env={**os.environ, "DEMOCHECK_DB": db},
        capture_output=True,
        text=True,
        timeout=240,
    )


def _url(settings: Settings) -> str:
    return settings.database_url.rsplit("/", 1)[0] + f"/{DB}"


def _figures(out: str) -> dict[str, int]:
    m = OK.search(out)
    assert m, out
    names = ("declared", "released", "fixes", "departed", "alerts")
    return dict(zip(names, map(int, m.groups()), strict=True))


def _connections(db: psycopg.Connection[Any]) -> int:
    """Sessions our role holds on the check's database (TimescaleDB's own worker aside)."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = current_user",
        (DB,),
    ).fetchone()
    return int(row[0])


@pytest.fixture(scope="module")
def first() -> subprocess.CompletedProcess[str]:
    """One check on a freshly created database."""
    return _fresh_check("--timeout", "120")


@pytest.mark.integration
def test_demo_check_on_a_fresh_database_declares_releases_departs_and_alerts(
    settings: Settings, db: psycopg.Connection[Any], first: subprocess.CompletedProcess[str]
) -> None:
    assert first.returncode == 0, first.stdout + first.stderr
    figures = _figures(first.stdout)
    assert figures["declared"] == figures["released"] == 8
    assert figures["fixes"] > 0
    assert figures["departed"] >= 1
    assert figures["alerts"] >= 1
    assert "seal_tampered" in first.stdout  # truck 7's seal is cut on the way
    # Every process it started has stopped: none holds a connection to its database.
    assert _connections(db) == 0

    with psycopg.connect(_url(settings)) as conn:
        rows = conn.execute(
            "SELECT t.mrn, t.office_departure, e.kind, e.actor FROM transits t"
            " JOIN transit_events e ON e.mrn = t.mrn ORDER BY t.mrn, e.at, e.id"
        ).fetchall()
    timeline: dict[str, list[tuple[str, str]]] = {}
    for mrn, office, kind, actor in rows:
        timeline.setdefault(mrn, []).append((kind, actor.split(":")[0]))
        assert kind not in ("declared", "released") or actor.endswith(f"@{office}")
    assert len(timeline) == 8
    departed = [m for m, ev in timeline.items() if ("departed", "ingest") in ev]
    assert departed
    # Declared and released by the officer of the office of departure, over the API,
    # then departed as ingest saw the truck leave that office's zone.
    kinds = [k for k, _ in timeline[departed[0]]]
    assert kinds[:3] == ["declared", "released", "departed"]


@pytest.mark.integration
def test_demo_check_runs_again_on_the_same_database_with_new_transits(
    settings: Settings, db: psycopg.Connection[Any], first: subprocess.CompletedProcess[str]
) -> None:
    assert first.returncode == 0, first.stdout + first.stderr
    with psycopg.connect(_url(settings)) as conn:
        before = {r[0] for r in conn.execute("SELECT mrn FROM transits").fetchall()}

    again = subprocess.run(
        [str(ROOT / ".venv/bin/transit"), "demo", "--check", "--own-broker", "--timeout", "120"],
        env={**os.environ, "TRANSIT_DATABASE_URL": _url(settings)},
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 trackers registered, 8 transits of an earlier run withdrawn" in again.stdout
    assert _figures(again.stdout)["released"] == 8
    with psycopg.connect(_url(settings)) as conn:
        states = dict(conn.execute("SELECT mrn, status FROM transits").fetchall())
    assert len(states) == 16
    assert {states[m] for m in before} <= {"closed", "cancelled"}
    assert _connections(db) == 0


@pytest.mark.integration
def test_demo_check_without_ingest_fails_naming_what_did_not_happen() -> None:
    r = _fresh_check("--timeout", "20", "--without", "ingest", db=f"{DB}_fail")

    assert r.returncode == 1, r.stdout
    verdict = next(line for line in r.stdout.splitlines() if "FAILED" in line)
    assert "no fix was stored" in verdict
    assert "no truck departed (8 of 8 not released" in verdict
    assert "the tracker has not reported" in verdict
    assert "no alert was raised" in verdict
    logs = re.search(r"logs: (\S+)", r.stdout)
    assert logs, r.stdout
    shutil.rmtree(Path(logs.group(1)).parent)
