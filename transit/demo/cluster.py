"""The demo's cluster profile (``transit demo --cluster``, ``make demo-cluster``): the
same fleet and the same customs office, on the clustered stack of issue 14.

Three RabbitMQ nodes (scripts/cluster-broker.sh) take the trucks over MQTT 3.1.1, each
truck given the three and failing over; Patroni's primary and synchronous standby
(scripts/cluster-db.sh) hold the data, reached by the libpq multi-host URL; two
``transit api`` behind HAProxy and two ``transit notify`` (scripts/cluster-api.sh);
two ingest workers read the quorum queue over AMQP. The broker and the database are
left running when the demo stops, as ``make demo`` leaves the local services (``make
cluster-down cluster-db-down`` stops them); the API and the notifiers stop with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware_sim.scenario import TruckPlan
from transit.broker import device_password
from transit.cluster.api import ClusterApi
from transit.cluster.broker import Management, Node, load_nodes, nodes_file, run_script
from transit.cluster.database import ClusterDatabase
from transit.config import Settings

MQTT_VERSION = "3.1.1"  # RabbitMQ 3.10's MQTT plugin speaks 3.1.1 only
INGEST_WORKERS = 2


@dataclass
class ClusterStack:
    """The clustered stack as the demo uses it."""

    settings: Settings  # the database, broker nodes and AMQP URLs of the cluster
    env: dict[str, str]  # the environment of the processes the demo starts
    nodes: list[Node]
    api: ClusterApi

    @property
    def base(self) -> str:
        """The API, through HAProxy."""
        return self.api.url

    def register(self, fleet: list[TruckPlan]) -> None:
        """Let each truck log in to the broker cluster (RabbitMQ users, over its
        management API), with the password the simulator derives."""
        s = self.settings
        admin = Management(self.nodes, s.mqtt_admin_user, s.mqtt_admin_password)
        for p in fleet:
            admin.register_device(p.device_id, device_password(s.device_secret, p.device_id))

    def stop(self) -> None:
        """Stop what the demo started of the cluster: the APIs and notifiers."""
        self.api.stop()


def bring_up(settings: Settings, say: Callable[[str], None]) -> ClusterStack:
    """Start (or find running) the broker cluster, the HA database and the API cluster.

    Raises:
        RuntimeError: a script failed (its output says why).
    """
    t0 = time.monotonic()
    say("demo: the broker cluster (3 RabbitMQ nodes) ...")
    run_script("start", timeout=900)
    say("demo: the HA database (Patroni: primary and synchronous standby) ...")
    db = ClusterDatabase()
    db.start()
    url = db.url()
    nodes = load_nodes(nodes_file(settings))
    mqtt = ",".join(n.mqtt_url for n in nodes)
    amqp = ",".join(f"amqp://127.0.0.1:{n.amqp_port}/%2F" for n in nodes)
    extra = {"TRANSIT_DATABASE_URL": url, "TRANSIT_MQTT_URL": mqtt, "TRANSIT_AMQP_URL": amqp}
    say("demo: two APIs behind HAProxy and two notifiers ...")
    api = ClusterApi(apis=2, notifiers=2, env=extra)
    api.start()
    say(f"demo: cluster up in {time.monotonic() - t0:.0f} s")
    own = settings.model_copy(update={"database_url": url, "mqtt_url": mqtt, "amqp_url": amqp})
    return ClusterStack(own, {**os.environ, **extra}, nodes, api)
