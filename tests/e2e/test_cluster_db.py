"""The highly available database (issue 14, point 2): the primary's PostgreSQL is
SIGKILLed while a writer commits audited rows and alerts through the project's
repositories and the API's pool, over the libpq multi-host URL.

Patroni must promote the synchronous standby; the writer must go on by itself; every
commit that returned, before the kill and after it, must be there; the audit chain must
verify and the open alerts must still be open; the killed node must come back as the
synchronous standby with the same rows. The failover time (kill to the first commit on
the new primary) is printed. The test starts the cluster with scripts/cluster-db.sh
(installing Patroni and etcd when absent) and stops it at the end.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from firmware_sim.catalogue import clean_fleet
from transit import audit
from transit.cluster.database import ClusterDatabase
from transit.db import alerts
from transit.db.migrate import migrate
from transit.db.pool import open_pool
from transit.geofence.corridor import acts_network
from transit.model import AlertEvent, AlertType, Severity
from transit.provision import import_geojson, provision_fleet

pytestmark = pytest.mark.timeout(300)

DB = "transit_hatest"
ACTOR = "cluster-db-test"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterDatabase]:
    """The HA database, started by its script (or found running), stopped at the end."""
    db = ClusterDatabase()
    try:
        db.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the HA database did not start: {exc}")
    try:
        yield db
    finally:
        db.stop()


@dataclass
class Writer:
    """Commits one audited entry per transaction, and every tenth an alert, recording
    each commit that returned; a failed one is retried as the next entry."""

    url: str
    mrns: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    acked: list[tuple[int, float, int]] = field(default_factory=list)  # n, when, audit id
    alert_keys: list[str] = field(default_factory=list)  # cond_key of each alert committed
    errors: list[tuple[float, str]] = field(default_factory=list)

    def run(self) -> None:
        pool = open_pool(self.url, max_size=2)
        n = 0
        try:
            while not self.done.is_set():
                n += 1
                key = f"w{n}" if n % 10 == 0 else ""
                try:
                    with pool.connection() as conn:
                        rid = audit.append(conn, ACTOR, "test.write", f"n{n}", {"n": n})
                        if key:
                            alerts.record(conn, [_alert(self.mrns[n % len(self.mrns)], key)])
                    self.acked.append((n, time.monotonic(), rid))
                    if key:
                        self.alert_keys.append(key)
                except psycopg.Error as exc:
                    self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                    self.done.wait(0.05)
                self.done.wait(0.005)
        finally:
            pool.close()

    def first_after(self, t: float) -> float | None:
        return next((at for _, at, _ in self.acked if at > t), None)


def _alert(mrn: str, key: str) -> AlertEvent:
    return AlertEvent(
        mrn=mrn,
        device_id="HA-TEST",
        type=AlertType.ROUTE_DEVIATION,
        severity=Severity.HIGH,
        action="open",
        time=datetime.now(UTC),
        key=key,
    )


def _wait(until: float, what: str, check: Callable[[], bool]) -> None:
    while not check():
        assert time.monotonic() < until, what
        time.sleep(0.1)


def test_primary_killed_under_load_loses_no_acknowledged_commit(
    cluster: ClusterDatabase,
) -> None:
    url = cluster.fresh_database(DB)
    plans = clean_fleet(3)
    with psycopg.connect(url) as conn:
        migrate(conn)
        import_geojson(conn, acts_network())
        provision_fleet(conn, plans)
        alerts.record(conn, [_alert(p.mrn, "before") for p in plans])
        audit.append(conn, ACTOR, "test.setup", "fleet", {"trucks": len(plans)})
        conn.commit()
        open_before = alerts.open_keys(conn)
    assert len(open_before) == 3

    writer = Writer(url, [p.mrn for p in plans])
    thread = threading.Thread(target=writer.run, name="ha-writer", daemon=True)
    began = time.monotonic()
    thread.start()
    try:
        _wait(time.monotonic() + 30, "the writer commits nothing", lambda: len(writer.acked) >= 200)
        old = cluster.leader()
        assert old is not None
        name, pid = cluster.kill_primary()
        killed = time.monotonic()
        acked_before = len(writer.acked)

        new = cluster.wait_for_leader(90, other_than=name)
        promoted = time.monotonic() - killed
        _wait(
            killed + 120,
            f"no commit returned after the kill: {writer.errors[-3:]}",
            lambda: writer.first_after(killed) is not None,
        )
        first = writer.first_after(killed)
        assert first is not None
        n_then = len(writer.acked)
        _wait(time.monotonic() + 30, "the writer stopped", lambda: len(writer.acked) > n_then + 200)
    finally:
        writer.done.set()
        thread.join(30)

    failover = first - killed
    assert new.name != name
    assert not [e for at, e in writer.errors if at < killed], "errors before the kill"
    acked = {rid: n for n, _, rid in writer.acked}
    with psycopg.connect(url) as conn:
        stored = dict(
            conn.execute(
                "SELECT id, subject FROM audit_log WHERE actor = %s AND action = 'test.write'",
                (ACTOR,),
            ).fetchall()
        )
        lost = [rid for rid, n in acked.items() if stored.get(rid) != f"n{n}"]
        verdict = audit.verify(conn)
        open_after = alerts.open_keys(conn)
        primary_rows = len(stored)
    assert lost == [], f"{len(lost)} acknowledged commits missing"
    assert verdict.ok, verdict.problems
    assert open_before <= open_after
    assert {k for _, _, k in open_after} >= set(writer.alert_keys) | {"before"}

    # Patroni starts the killed node again, rewound, as the synchronous standby.
    back = cluster.wait_for_sync_standby(120, name=name)
    old_url = make_conninfo(url, host="127.0.0.1", port=back.port, target_session_attrs="any")
    with psycopg.connect(old_url, autocommit=True) as conn:

        def caught_up() -> bool:
            found = conn.execute(
                "SELECT count(*) FROM audit_log WHERE actor = %s AND action = 'test.write'",
                (ACTOR,),
            ).fetchone()
            return found is not None and found[0] == primary_rows

        _wait(time.monotonic() + 30, f"{name} did not catch up", caught_up)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

    print(
        f"\nHA database: {name} (postmaster {pid}) SIGKILLed after {acked_before} commits;"
        f" {new.name} leader after {promoted:.2f} s; first commit on it {failover:.2f} s"
        f" after the kill; {len(writer.acked)} commits acknowledged"
        f" ({acked_before / (killed - began):.0f}/s before the kill), lost {len(lost)},"
        f" failed (retried) {len(writer.errors)}; audit chain {verdict.rows} rows intact;"
        f" {len(open_after)} alerts open; {name} back as {back.role}"
    )
