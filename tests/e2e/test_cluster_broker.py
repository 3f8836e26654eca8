"""The clustered broker (issue 14, point 1): three RabbitMQ nodes on loopback, started by
scripts/cluster-broker.sh; a node killed under load loses no acknowledged message.

Nothing here is skipped: when rabbitmq-server cannot be installed or a node does not
start, the tests fail with the script's reason. The cluster is stopped at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from firmware_sim.fleet import Fleet
from firmware_sim.route import Route
from firmware_sim.truck import Truck
from transit.broker import device_password
from transit.cluster.amqp_source import AmqpSource
from transit.cluster.broker import Management, Node, load_nodes, nodes_file, run_script
from transit.cluster.killtest import run_kill
from transit.config import Settings, get_settings

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Settings, list[Node]]]:
    settings = get_settings()
    try:
        run_script("start", timeout=400)
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"the broker cluster did not start: {exc}")
    try:
        yield settings, load_nodes(nodes_file(settings))
    finally:
        run_script("stop", timeout=200)


def _admin(settings: Settings, nodes: list[Node]) -> Management:
    return Management(nodes, settings.mqtt_admin_user, settings.mqtt_admin_password)


def _source(settings: Settings, nodes: list[Node]) -> AmqpSource:
    return AmqpSource(
        [n.amqp_url(settings.mqtt_ingest_user, settings.mqtt_ingest_password) for n in nodes]
    )


def test_the_cluster_has_three_nodes_and_the_ingest_queue_a_replica_on_each(cluster) -> None:
    settings, nodes = cluster
    admin = _admin(settings, nodes)
    assert sorted(admin.running_nodes()) == sorted(n.name for n in nodes)
    assert sorted(admin.queue_members()) == sorted(n.name for n in nodes)


def test_a_device_publishing_on_any_node_reaches_the_ingest_queue_as_its_topic(cluster) -> None:
    settings, nodes = cluster
    admin = _admin(settings, nodes)
    admin.purge()
    route = Route([(101.6869, 3.1390), (101.5770, 3.3210)])
    trucks = [Truck(f"cluster-truck-{i}", route, [f"ES01-000000000{i}"], seed=i) for i in range(3)]
    for t in trucks:
        admin.register_device(t.device_id, device_password(settings.device_secret, t.device_id))
    # The first URL is no broker at all: every truck moves on along the list. (RabbitMQ
    # 3.10 speaks MQTT 3.1.1, not 5: devices on the cluster sign in envelopes.)
    urls = ["mqtt://127.0.0.1:9", *(n.mqtt_url for n in nodes)]
    fleet = Fleet(
        settings.model_copy(update={"mqtt_url": ",".join(urls)}),
        trucks,
        realtime=False,
        mqtt_version="3.1.1",
    )
    fleet.connect()
    try:
        # The first truck was given the dead address and moved on along the list.
        assert fleet.failovers["cluster-truck-0"].address != ("127.0.0.1", 9)
        fleet.run(steps=3, start=datetime.now(UTC))
    finally:
        fleet.close()
    source = _source(settings, nodes)
    got: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(got) < fleet.published:
            batch = source.next_batch(wait_s=0.5)
            got += [d.topic for d in batch]
            assert source.ack(batch)
    finally:
        source.close()
    # Arming seals, three steps of telemetry, the retained online and offline statuses.
    assert len(got) >= fleet.published
    assert {f"transit/v1/devices/{t.device_id}/telemetry" for t in trucks} <= set(got)


def test_a_device_may_publish_only_under_its_own_topics(cluster) -> None:
    settings, nodes = cluster
    admin = _admin(settings, nodes)
    admin.purge()
    admin.register_device(
        "cluster-honest", device_password(settings.device_secret, "cluster-honest")
    )
    own = Truck("cluster-honest", Route([(101.6, 3.1), (101.5, 3.3)]), [], seed=1)
    fleet = Fleet(
        settings.model_copy(update={"mqtt_url": nodes[0].mqtt_url}),
        [own],
        realtime=False,
        mqtt_version="3.1.1",
    )
    fleet.connect()
    try:
        client = fleet.clients["cluster-honest"]
        mine = client.publish("transit/v1/devices/cluster-honest/telemetry", b'{"v":1}', qos=1)
        mine.wait_for_publish(10)
        # RabbitMQ refuses the publish and closes the connection: no PUBACK, nothing queued.
        theirs = client.publish("transit/v1/devices/someone-else/telemetry", b'{"v":1}', qos=1)
        time.sleep(2.0)
        refused = not theirs.is_published()
    finally:
        fleet.close()
    source = _source(settings, nodes)
    try:
        topics = {d.topic for d in source.next_batch(wait_s=2.0)}
    finally:
        source.close()
    assert "transit/v1/devices/cluster-honest/telemetry" in topics
    assert "transit/v1/devices/someone-else/telemetry" not in topics
    assert refused


def test_killing_the_queue_leader_under_load_loses_no_acknowledged_message(cluster) -> None:
    settings, nodes = cluster
    report = run_kill(settings, nodes, devices=24, rate=200.0, before_s=4.0, after_s=8.0)
    print("\n".join(report.lines()))
    assert report.was_leader  # the scenario ran as named: the queue's leader died
    assert report.devices_failed_over > 0 and report.consumer_failover_s
    assert report.lost == 0
    assert report.acknowledged == report.published  # every device got through, failing over
    # Repeats, if any, are of one (device, seq): the store's unique key writes them once.
    assert report.deliveries == report.received + report.duplicates
    # The killed node comes back and the queue has its three replicas again.
    run_script("start", timeout=400)
    admin = _admin(settings, nodes)
    assert len(admin.running_nodes()) == 3
    assert len(admin.queue_members()) == 3
    assert json.loads(nodes_file(settings).read_text())["nodes"]
