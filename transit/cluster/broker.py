"""The clustered broker: three RabbitMQ nodes that scripts/cluster-broker.sh runs.

Devices publish MQTT (QoS 1) to any node; the MQTT plugin routes each message to
``amq.topic`` with the topic's ``/`` turned into ``.``, and from there into the quorum
queue ``transit.ingest``, which ingest consumes over AMQP (transit/cluster/amqp_source.py).
The plugin answers PUBACK only on the publisher confirm of every queue the message was
routed to, and a quorum queue confirms once a majority of its members has the message:
a PUBACK means the message is on a quorum (docs/cluster.md, measured by the kill test).

``python -m transit.cluster.broker setup`` declares the queue and its bindings once the
three nodes run; the start script calls it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pika  # type: ignore[import-untyped]

from transit.config import PROJECT_ROOT, Settings, get_settings

SCRIPT = PROJECT_ROOT / "scripts" / "cluster-broker.sh"
INGEST_QUEUE = "transit.ingest"
# The uplink topics (transit/v1/devices/+/telemetry, seal, status) as AMQP routing keys.
INGEST_ROUTING_KEYS = tuple(
    f"transit.v1.devices.*.{kind}" for kind in ("telemetry", "seal", "status")
)
CLUSTER_SIZE = 3


@dataclass(frozen=True)
class Node:
    """One node of the cluster, as the start script wrote it into nodes.json."""

    name: str
    mqtt_port: int
    amqp_port: int
    management_port: int
    pid_file: Path

    @property
    def mqtt_url(self) -> str:
        """Where devices reach this node."""
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def amqp_url(self, user: str, password: str) -> str:
        """Where the backend reaches this node over AMQP."""
        login = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"amqp://{login}@127.0.0.1:{self.amqp_port}/%2F"

    def pid(self) -> int | None:
        """The node's OS process, while it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


def nodes_file(settings: Settings) -> Path:
    """Where the start script describes the nodes."""
    return settings.run_dir / "cluster" / "rabbitmq" / "nodes.json"


def load_nodes(path: Path) -> list[Node]:
    """The nodes the start script describes in ``path`` (nodes.json)."""
    data = json.loads(path.read_text())
    return [
        Node(
            name=n["name"],
            mqtt_port=int(n["mqtt_port"]),
            amqp_port=int(n["amqp_port"]),
            management_port=int(n["management_port"]),
            pid_file=Path(n["pid_file"]),
        )
        for n in data["nodes"]
    ]


def run_script(action: str, timeout: float = 300.0) -> str:
    """Run ``scripts/cluster-broker.sh start|stop|status``; its output.

    Raises:
        RuntimeError: the script failed (its output says why: rabbitmq-server could not
            be installed, a node did not start).
    """
    proc = subprocess.run(
        ["bash", str(SCRIPT), action],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 and not (action == "status" and proc.returncode == 3):
        raise RuntimeError(f"cluster-broker.sh {action} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def kill(node: Node) -> int:
    """SIGKILL a node's Erlang VM, as a crashed server; the pid killed."""
    pid = node.pid()
    if pid is None:
        raise RuntimeError(f"{node.name} is not running")
    os.kill(pid, signal.SIGKILL)
    return pid


class Management:
    """The management HTTP API, through whichever node answers, as the admin user."""

    def __init__(self, nodes: list[Node], user: str, password: str) -> None:
        self.nodes = nodes
        self._auth = (user, password)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        errors = []
        for node in self.nodes:
            if node.pid() is None:
                continue
            url = f"http://127.0.0.1:{node.management_port}/api{path}"
            try:
                r = httpx.request(method, url, json=body, auth=self._auth, timeout=10.0)
            except httpx.TransportError as exc:
                errors.append(f"{node.name}: {exc}")
                continue
            if r.status_code >= 500:
                errors.append(f"{node.name}: HTTP {r.status_code}")
                continue
            r.raise_for_status()
            return r.json() if r.content else None
        raise RuntimeError(f"no node answered {method} {path}: {errors}")

    def running_nodes(self) -> list[str]:
        """The names of the cluster's nodes that run."""
        return [n["name"] for n in self._call("GET", "/nodes") if n.get("running")]

    def queue_leader(self, queue: str = INGEST_QUEUE) -> str:
        """The node that leads a quorum queue now."""
        info = self._call("GET", f"/queues/%2F/{quote(queue, safe='')}")
        return str(info["leader"])

    def queue_members(self, queue: str = INGEST_QUEUE) -> list[str]:
        """The nodes holding a replica of a quorum queue."""
        info = self._call("GET", f"/queues/%2F/{quote(queue, safe='')}")
        return [str(m) for m in info["members"]]

    def register_device(self, device_id: str, password: str) -> None:
        """Let a device log in over MQTT and publish only under its own topics (its
        uplink, and read its own ``cmd``), as the Mosquitto ACL does."""
        user = quote(device_id, safe="")
        self._call("PUT", f"/users/{user}", {"password": password, "tags": ""})
        own = f"mqtt-subscription-{device_id}qos[01]"
        self._call(
            "PUT",
            f"/permissions/%2F/{user}",
            {
                "configure": f"^{own}$",
                "write": f"^(amq\\.topic|{own})$",
                "read": f"^(amq\\.topic|{own})$",
            },
        )
        prefix = f"^transit\\.v1\\.devices\\.{device_id}\\."
        self._call(
            "PUT",
            f"/topic-permissions/%2F/{user}",
            {
                "exchange": "amq.topic",
                "write": f"{prefix}(telemetry|seal|status)$",
                "read": f"{prefix}cmd$",
            },
        )

    def purge(self, queue: str = INGEST_QUEUE) -> None:
        """Drop every message of a queue (tests only)."""
        self._call("DELETE", f"/queues/%2F/{quote(queue, safe='')}/contents")


def declare_ingest_queue(channel: Any, queue: str = INGEST_QUEUE) -> None:
    """Declare the quorum queue ingest reads and bind it to the device topics (idempotent).
    Its replicas are placed on the nodes running when it is first declared."""
    channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})
    for key in INGEST_ROUTING_KEYS:
        channel.queue_bind(queue=queue, exchange="amq.topic", routing_key=key)


def setup(nodes: list[Node], settings: Settings, timeout: float = 120.0) -> None:
    """Once every node runs in one cluster, declare the ingest queue on it.

    Raises:
        RuntimeError: the cluster did not form within ``timeout`` seconds.
    """
    mgmt = Management(nodes, settings.mqtt_admin_user, settings.mqtt_admin_password)
    deadline = time.monotonic() + timeout
    running: list[str] = []
    while time.monotonic() < deadline:
        try:
            running = mgmt.running_nodes()
        except (RuntimeError, httpx.HTTPError):
            running = []
        if len(running) >= CLUSTER_SIZE:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"the cluster has {running} running, not {CLUSTER_SIZE} nodes")
    params = pika.URLParameters(
        nodes[0].amqp_url(settings.mqtt_admin_user, settings.mqtt_admin_password)
    )
    with pika.BlockingConnection(params) as conn:
        declare_ingest_queue(conn.channel())


def main(argv: list[str] | None = None) -> int:
    """``python -m transit.cluster.broker setup [--nodes nodes.json]``."""
    parser = argparse.ArgumentParser(prog="python -m transit.cluster.broker")
    parser.add_argument("action", choices=["setup"])
    parser.add_argument("--nodes", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = get_settings()
    setup(load_nodes(args.nodes or nodes_file(settings)), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
