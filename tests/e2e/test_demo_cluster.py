"""The demo's cluster profile (issue 14, point 5): ``transit demo --cluster --check``
brings up the broker cluster, the HA database and the API cluster, puts a fleet under
way through HAProxy as a customs office does, over MQTT 3.1.1 to the RabbitMQ nodes and
ingest over AMQP, and exits 0 once fixes are stored, a truck departed and an alert is
raised; ``transit doctor --cluster`` then names every node's role and health. The
broker and database clusters are stopped afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from transit.cluster.broker import run_script
from transit.cluster.database import ClusterDatabase

pytestmark = pytest.mark.timeout(900)


def _transit(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stopped_after() -> Iterator[None]:
    yield
    ClusterDatabase().stop()
    run_script("stop", timeout=200)


def test_the_cluster_demo_check_puts_trucks_under_way_and_doctor_names_every_node(
    stopped_after: None,
) -> None:
    done = _transit("demo", "--cluster", "--check", "--timeout", "150", timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo check: ok" in done.stdout
    assert "an alert raised" in done.stdout

    # The demo stopped its APIs: doctor sees the broker and the database, not HAProxy.
    doc = _transit("doctor", "--cluster", "--json", timeout=120)
    report = json.loads(doc.stdout)["cluster"]
    broker = report["broker"]
    assert [n["up"] for n in broker["nodes"]] == [True, True, True], broker
    roles = sorted(n["role"] for n in broker["nodes"])
    assert roles == ["queue leader", "queue replica", "queue replica"], roles
    db = report["database"]
    assert sorted(m["role"] for m in db["members"]) == ["leader", "sync_standby"], db
    assert db["ok"], db
    assert not report["api"]["ok"] and "HAProxy not running" in report["api"]["error"]
    assert doc.returncode == 1  # a part down is a failing report
