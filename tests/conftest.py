"""Shared fixtures. Integration tests use the project's own PostgreSQL and Mosquitto,
started by `make test` (scripts/services.sh); when they are down, those tests fail."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from transit.config import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(settings.database_url) as conn:
        yield conn


@pytest.fixture
def tx(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection inside a transaction that is rolled back after the test: what the
    test writes is gone without deleting a row by hand. A repository's own
    ``conn.transaction()`` becomes a savepoint within it; a ``commit()`` is refused.
    For tests whose rows no other process must see (an API server or a worker does not
    see uncommitted rows: those tests use ``db`` and clean up what they made)."""
    with (
        psycopg.connect(settings.database_url) as conn,
        conn.transaction(force_rollback=True),
    ):
        yield conn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_url(settings: Settings) -> Iterator[str]:
    """A real API server (uvicorn in a subprocess) on a free loopback port."""
    yield from _api_server()


@pytest.fixture(scope="module")
def api_module(settings: Settings) -> Iterator[str]:
    """The same, shared by a module's tests."""
    yield from _api_server()


def _api_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "transit.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("API did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def ingest(settings):
    """A real ingest worker (in this process, on a thread) for the test's duration."""
    import threading

    from transit import bootstrap
    from transit.ingest.worker import WorkerConfig

    worker = bootstrap.ingest_worker(settings, WorkerConfig(client_id="transit-ingest-0"))
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    # Subscribed before the test publishes: a message published to a shared subscription
    # with no session in the group yet reaches nobody (the group's session may have been
    # ended by the last worker that left).
    assert worker.membership.subscribed.wait(30), "the ingest worker did not subscribe"
    yield worker
    worker.stop()
    runner.join(10)


@pytest.fixture
def close_transits(db):
    """MRNs a test puts under way; they are closed after it, so no later watchdog finds
    them silent."""
    mrns: list[str] = []
    yield mrns
    db.rollback()
    db.execute(
        "UPDATE transits SET status = 'closed', closed_at = now() WHERE mrn = ANY(%s)", (mrns,)
    )
    db.commit()


@pytest.fixture(scope="session")
def admin_key(settings: Settings) -> str:
    """An admin API key made for this test session."""
    from transit import keys

    with psycopg.connect(settings.database_url) as conn:
        key = keys.create(conn, "admin", label="tests")
        conn.commit()
    return key


def put_under_way(db, settings: Settings, plans: list[Any], forget_fixes: bool = False) -> None:
    """Declare the plans' transits under way, fresh: the network imported, alerts of an
    earlier run deleted, the trackers registered with the broker and not counted as
    heard (they are about to talk)."""
    from transit.geofence.corridor import acts_network
    from transit.provision import import_geojson, provision_fleet, sync_broker

    devices = [p.device_id for p in plans]
    import_geojson(db, acts_network())
    db.execute("DELETE FROM alerts WHERE mrn = ANY(%s)", ([p.mrn for p in plans],))
    if forget_fixes:
        db.execute("DELETE FROM fixes WHERE device_id = ANY(%s)", (devices,))
        # and the newest fix the stale filter measures a new run's fixes against
        db.execute("UPDATE devices SET last_fix_time = NULL WHERE device_id = ANY(%s)", (devices,))
    db.execute("UPDATE devices SET last_seen = NULL WHERE device_id = ANY(%s)", (devices,))
    db.commit()
    provision_fleet(db, plans)
    sync_broker(db, settings)
    time.sleep(0.5)
