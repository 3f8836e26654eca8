"""The cluster kill test (issue 14, "done when"): simulated trucks through the whole
clustered stack while its parts are killed, against the same run without kills.

The broker is three RabbitMQ nodes (scripts/cluster-broker.sh), the database Patroni's
primary and synchronous standby (scripts/cluster-db.sh, a database of the test's own,
reached by the libpq multi-host URL), the API two processes behind HAProxy
(scripts/cluster-api.sh). The detection catalogue's trucks publish over MQTT 3.1.1 to
the three broker nodes; two ingest processes read the quorum queue over AMQP; a client
reads the API through HAProxy all along. Once without failures, once with SIGKILL for
the broker node leading the queue, the database primary, an API process and an ingest
worker, one after the other during the run. Both runs must store every acknowledged
message once and raise the catalogue's alerts, the same in both; no API request may
fail around the API's kill. The figures are printed. About five minutes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests import cluster_stack as stack
from transit import keys
from transit.cluster.api import ClusterApi
from transit.cluster.broker import Management, Node, kill, load_nodes, nodes_file, run_script
from transit.cluster.database import ClusterDatabase
from transit.config import Settings
from transit.db.migrate import migrate

pytestmark = pytest.mark.timeout(600)

DB = "transit_cluster"


@dataclass
class Cluster:
    settings: Settings  # the broker nodes, the AMQP URLs, the HA database's URL
    nodes: list[Node]
    db: ClusterDatabase
    api: ClusterApi


@pytest.fixture(scope="module")
def cluster(settings: Settings) -> Iterator[Cluster]:
    """The broker cluster, the HA database and the API cluster, started, then stopped."""
    db = ClusterDatabase()
    api: ClusterApi | None = None
    try:
        run_script("start", timeout=400)
        db.start()
        url = db.fresh_database(DB)
        with psycopg.connect(url) as conn:
            migrate(conn)
        nodes = load_nodes(nodes_file(settings))
        own = settings.model_copy(
            update={
                "database_url": url,
                "mqtt_url": ",".join(n.mqtt_url for n in nodes),
                "amqp_url": ",".join(f"amqp://127.0.0.1:{n.amqp_port}/%2F" for n in nodes),
            }
        )
        stack.register_devices(own, nodes)
        api = ClusterApi(apis=2, notifiers=0, env={"TRANSIT_DATABASE_URL": url})
        api.start()
        yield Cluster(own, nodes, db, api)
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"the clustered stack did not start: {exc}")
    finally:
        if api is not None:
            api.stop()
        db.stop()
        run_script("stop", timeout=200)


@dataclass
class Reader:
    """A control room reading transits through HAProxy, four requests at a time."""

    url: str
    key: str = ""  # a control-room key, made once the run's database is provisioned
    results: list[tuple[float, int | str]] = field(default_factory=list)  # start, status
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=10) as c:
            while not self.stop.is_set():
                t = time.monotonic()
                try:
                    r = c.get("/api/v1/transits", params={"limit": 5})
                    self.results.append((t, r.status_code))
                except httpx.HTTPError as exc:
                    self.results.append((t, repr(exc)))
                time.sleep(0.05)

    def failed(self, since: float, until: float) -> list[tuple[float, int | str]]:
        return [r for r in self.results if since <= r[0] < until and r[1] != 200]


def _kill_queue_leader(c: Cluster) -> str:
    admin = Management(c.nodes, c.settings.mqtt_admin_user, c.settings.mqtt_admin_password)
    leader = admin.queue_leader()
    node = next(n for n in c.nodes if n.name == leader)
    kill(node)
    return f"{leader} (the ingest queue's leader) SIGKILLed"


def _kill_primary(c: Cluster, failover: list[str]) -> str:
    name, pid = c.db.kill_primary()
    at = time.monotonic()

    def watch() -> None:
        new = c.db.wait_for_leader(60, other_than=name)
        failover.append(f"{new.name} leader {time.monotonic() - at:.1f} s after {name}'s kill")

    threading.Thread(target=watch, daemon=True).start()
    return f"{name} (the primary, postmaster pid {pid}) SIGKILLed"


def _kill_api(c: Cluster, at: list[float]) -> str:
    at.append(time.monotonic())
    pid = c.api.kill("api1")
    return f"api1 (pid {pid}) SIGKILLed"


def _kill_a_worker(c: Cluster) -> str:
    with psycopg.connect(c.settings.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT worker_id, pid FROM ingest_workers ORDER BY worker_id LIMIT 1"
        ).fetchone()
    assert row is not None, "no ingest worker has reported"
    os.kill(int(row[1]), signal.SIGKILL)
    return f"ingest worker {row[0]} (pid {row[1]}) SIGKILLed"


def _restore(c: Cluster) -> None:
    """What the kills took down comes back, for what follows."""
    run_script("start", timeout=400)
    c.db.start()
    c.api.start()


def test_killing_broker_database_api_and_worker_loses_nothing_and_changes_no_alert(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = cluster
    # Event time ends before now even at a slow pace: the future filter must not bite.
    start = datetime.now(UTC) - timedelta(seconds=(stack.STEP + 2) * stack.STEPS + 300)
    quiet = stack.run(c.settings, c.nodes, start, [])

    failover: list[str] = []
    api_killed: list[float] = []
    kills = [
        stack.Kill("broker node", 0.15, lambda: _kill_queue_leader(c)),
        stack.Kill("database primary", 0.35, lambda: _kill_primary(c, failover)),
        stack.Kill("API process", 0.6, lambda: _kill_api(c, api_killed)),
        stack.Kill("ingest worker", 0.8, lambda: _kill_a_worker(c)),
    ]
    reader = Reader(c.api.url)
    reading = threading.Thread(target=reader.run)

    def read_along() -> None:
        with psycopg.connect(c.settings.database_url) as conn:
            reader.key = keys.create(conn, "control_room", label="cluster stack test")
            conn.commit()
        reading.start()

    try:
        rough = stack.run(c.settings, c.nodes, start, kills, ready=read_along)
    finally:
        reader.stop.set()
        if reading.is_alive():
            reading.join(15)
        _restore(c)
    api_failed = reader.failed(api_killed[0] - 1, api_killed[0] + 10) if api_killed else []
    all_failed = [r for r in reader.results if r[1] != 200]
    with capsys.disabled():
        print(f"\ncluster, no kills: {quiet.line()}")
        print(f"cluster, kills:    {rough.line()}")
        for line in rough.killed + rough.stalls + failover:
            print(f"  {line}")
        print(
            f"  API through HAProxy: {len(reader.results)} requests, {len(api_failed)} failed"
            f" around the API's kill, {len(all_failed)} in the whole run (the database's"
            f" failover included: {dict(Counter(str(r[1]) for r in all_failed))})"
        )
    for r in (quiet, rough):
        assert r.acknowledged == r.published, r.line()
        assert r.lost == 0, r.line()
        assert r.duplicated == 0, r.line()
    assert stack.problems(quiet.alerts) == []
    assert rough.alerts == quiet.alerts, rough.alerts ^ quiet.alerts
    assert len(rough.killed) == len(kills)
    assert failover, "no new database leader was seen"
    assert len(reader.results) > 100, "the API was hardly read"
    assert api_failed == [], api_failed[:5]
