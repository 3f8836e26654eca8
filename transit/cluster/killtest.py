"""The kill test of the clustered broker: SIGKILL a node under load, count what survives.

Simulated devices (MQTT 3.1.1, QoS 1) spread over the three nodes publish numbered
messages; a consumer reads the ingest quorum queue over AMQP (as ingest does) and
records every ``(device, seq)``; partway through, the node leading the queue is killed.
Devices on that node fail over to the next one and paho resends what was not yet
acknowledged; the consumer, started on the same node, fails over too. The report says
how many messages were published, acknowledged (PUBACK), received, lost (acknowledged,
never received: must be 0) and received twice (each a repeat of one ``(device, seq)``,
which the database's unique key writes once).

``python -m transit.cluster.killtest [--devices N --rate R ...]`` prints the report;
the cluster must run (scripts/cluster-broker.sh start) and the queue is purged first:
run it on a test cluster, not one serving trucks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from transit.broker import device_password
from transit.cluster.amqp_source import AmqpSource
from transit.cluster.broker import Management, Node, kill, load_nodes, nodes_file
from transit.config import Settings, get_settings
from transit.mqtt import Failover, make_client


@dataclass
class KillReport:
    """What one run of the kill test counted."""

    devices: int
    killed: str
    was_leader: bool
    leader_after: str
    published: int = 0
    acknowledged: int = 0
    received: int = 0  # distinct (device, seq)
    deliveries: int = 0  # every delivery, repeats included
    lost: int = 0  # acknowledged, never received
    duplicates: int = 0  # deliveries beyond the first of their (device, seq)
    unacked_received: int = 0  # received though the device never had its PUBACK
    unacked: int = 0  # published, no PUBACK by the end of the drain
    devices_failed_over: int = 0
    device_outage_s: list[float] = field(default_factory=list)
    consumer_failover_s: list[float] = field(default_factory=list)
    max_puback_wait_s: float = 0.0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The report as printable lines."""
        outage = self.device_outage_s
        return [
            f"devices {self.devices}, killed {self.killed} (queue leader: {self.was_leader}),"
            f" leader after: {self.leader_after}, run {self.seconds:.1f} s",
            f"published {self.published}, acknowledged {self.acknowledged},"
            f" received {self.received} distinct ({self.deliveries} deliveries)",
            f"lost (acknowledged, never received) {self.lost}",
            f"duplicated deliveries {self.duplicates} (each a repeat of one (device, seq))",
            f"received without PUBACK {self.unacked_received}, without PUBACK at the end"
            f" {self.unacked}",
            f"devices failed over {self.devices_failed_over}: outage median"
            f" {statistics.median(outage) if outage else 0:.2f} s, max"
            f" {max(outage, default=0):.2f} s; longest PUBACK wait {self.max_puback_wait_s:.2f} s",
            f"consumer failovers {len(self.consumer_failover_s)}:"
            f" {', '.join(f'{s:.2f} s' for s in self.consumer_failover_s) or '-'}",
        ]


class _Device:
    """One simulated device: a paho client with failover and what it sent."""

    def __init__(self, settings: Settings, device_id: str, nodes: list[Node], first: int) -> None:
        self.device_id = device_id
        self.topic = f"transit/v1/devices/{device_id}/telemetry"
        client = make_client(
            settings,
            device_id,
            device_password(settings.device_secret, device_id),
            client_id=device_id,
            version="3.1.1",
        )
        client.on_publish = self._on_publish
        addresses = [("127.0.0.1", n.mqtt_port) for n in nodes]
        self.failover = Failover(client, addresses, first=first)
        self.client = client
        self.seq = 0
        self.sent: dict[int, tuple[int, float]] = {}  # mid -> (seq, when published)
        self.acked: dict[int, float] = {}  # mid -> when the PUBACK came

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self.acked[mid] = time.monotonic()

    def publish(self) -> None:
        self.seq += 1
        body = json.dumps({"device": self.device_id, "seq": self.seq}).encode()
        # Published while no node is reachable, paho keeps it and sends it on reconnect.
        info = self.client.publish(self.topic, body, qos=1)
        if info.mid in self.sent:
            raise RuntimeError("message ids wrapped: publish fewer messages per device")
        self.sent[info.mid] = (self.seq, time.monotonic())

    def pending(self) -> int:
        return len(self.sent) - len(self.acked)


def _consume(source: AmqpSource, seen: Counter[tuple[str, int]], stop: threading.Event) -> None:
    while not stop.is_set():
        batch = source.next_batch(wait_s=0.5)
        for d in batch:
            msg = json.loads(d.payload)
            seen[(msg["device"], int(msg["seq"]))] += 1
        source.ack(batch)


def run_kill(
    settings: Settings,
    nodes: list[Node],
    devices: int = 30,
    rate: float = 300.0,
    before_s: float = 5.0,
    after_s: float = 10.0,
    drain_s: float = 60.0,
    kill_leader: bool = True,
) -> KillReport:
    """Publish from ``devices`` devices at ``rate`` messages/s in all, kill a node after
    ``before_s`` seconds (the queue's leader, or else a follower), publish
    ``after_s`` seconds more, then wait up to ``drain_s`` for PUBACKs and deliveries."""
    t0 = time.monotonic()
    mgmt = Management(nodes, settings.mqtt_admin_user, settings.mqtt_admin_password)
    mgmt.purge()
    leader = mgmt.queue_leader()
    target = next(n for n in nodes if (n.name == leader) == kill_leader)
    ids = [f"killtest-{i:03d}" for i in range(devices)]
    for device_id in ids:
        mgmt.register_device(device_id, device_password(settings.device_secret, device_id))
    # The consumer starts on the node that will die, to fail over as well.
    order = [target, *(n for n in nodes if n is not target)]
    source = AmqpSource(
        [n.amqp_url(settings.mqtt_ingest_user, settings.mqtt_ingest_password) for n in order]
    )
    seen: Counter[tuple[str, int]] = Counter()
    stop = threading.Event()
    consumer = threading.Thread(target=_consume, args=(source, seen, stop), daemon=True)
    consumer.start()
    fleet = [_Device(settings, d, nodes, first=i) for i, d in enumerate(ids)]
    for dev in fleet:
        dev.failover.start(keepalive=10)
    try:
        for dev in fleet:
            if not dev.failover.connected.wait(15):
                raise RuntimeError(f"{dev.device_id} could not connect to {dev.failover.address}")
        start = time.monotonic()
        killed = False
        k = 0
        while (now := time.monotonic()) < start + before_s + after_s:
            if not killed and now >= start + before_s:
                kill(target)
                killed = True
            due = int((now - start) * rate)
            while k < due:
                fleet[k % devices].publish()
                k += 1
            time.sleep(0.005)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(d.pending() for d in fleet):
            time.sleep(0.2)
        acked = {(d.device_id, d.sent[m][0]) for d in fleet for m in d.acked if m in d.sent}
        while time.monotonic() < deadline and not acked <= seen.keys():
            time.sleep(0.2)
        time.sleep(1.0)  # late repeats, if any, still count
    finally:
        for dev in fleet:
            dev.failover.stop()
        stop.set()
        consumer.join(10)
        source.close()
    try:
        leader_after = mgmt.queue_leader()
    except RuntimeError as exc:
        leader_after = f"unknown ({exc})"
    published = {(d.device_id, s) for d in fleet for s, _ in d.sent.values()}
    waits = [d.acked[m] - d.sent[m][1] for d in fleet for m in d.acked if m in d.sent]
    outages = [s for d in fleet for s in d.failover.outages]
    return KillReport(
        devices=devices,
        killed=target.name,
        was_leader=target.name == leader,
        leader_after=leader_after,
        published=len(published),
        acknowledged=len(acked),
        received=len(seen),
        deliveries=sum(seen.values()),
        lost=len(acked - seen.keys()),
        duplicates=sum(c - 1 for c in seen.values()),
        unacked_received=len((seen.keys() & published) - acked),
        unacked=len(published - acked),
        devices_failed_over=sum(1 for d in fleet if d.failover.outages),
        device_outage_s=outages,
        consumer_failover_s=list(source.stats.failover_s),
        max_puback_wait_s=max(waits, default=0.0),
        seconds=time.monotonic() - t0,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the kill test once on the running cluster and print its report; exit 1 when
    an acknowledged message was lost."""
    parser = argparse.ArgumentParser(prog="python -m transit.cluster.killtest")
    parser.add_argument("--devices", type=int, default=30)
    parser.add_argument(
        "--rate", type=float, default=300.0, help="messages per second, all devices"
    )
    parser.add_argument("--before", type=float, default=5.0, help="seconds before the kill")
    parser.add_argument("--after", type=float, default=10.0, help="seconds after the kill")
    parser.add_argument("--drain", type=float, default=60.0)
    parser.add_argument(
        "--kill", choices=["leader", "follower"], default="leader", help="which node dies"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    report = run_kill(
        settings,
        load_nodes(nodes_file(settings)),
        devices=args.devices,
        rate=args.rate,
        before_s=args.before,
        after_s=args.after,
        drain_s=args.drain,
        kill_leader=args.kill == "leader",
    )
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return 1 if report.lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
