"""Drive a fleet of simulated trucks over MQTT, each logged in as its own device."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt

from firmware_sim.truck import Truck
from transit.broker import device_password
from transit.config import Settings
from transit.devices import payload as wire
from transit.mqtt import ClientCert, Failover, broker_addresses, make_client, signed

log = logging.getLogger(__name__)


class FlakyTransport:
    """Duplicated and out-of-order delivery, as flaky modems produce them, when a
    truck's ``duplicate`` or ``reorder`` incident is in force."""

    def __init__(self) -> None:
        self._held: dict[str, list[tuple[str, wire.Uplink]]] = {}

    def deliver(
        self, truck: Truck, out: list[tuple[str, wire.Uplink]]
    ) -> list[tuple[str, wire.Uplink]]:
        """What reaches the broker this interval, of what the truck sent."""
        if truck.active("duplicate"):
            out = [m for m in out for _ in (0, 1)]
        if truck.active("reorder"):
            held = self._held.pop(truck.device_id, [])
            self._held[truck.device_id] = out  # sent after the next interval's messages
            return held
        return [*self._held.pop(truck.device_id, []), *out]

    def drain(self) -> list[tuple[str, str, wire.Uplink]]:
        """Everything still held back, at the end of a run."""
        rest = [(dev, kind, m) for dev, held in self._held.items() for kind, m in held]
        self._held.clear()
        return rest


class Fleet:
    """Trucks publishing telemetry and seal reports at QoS 1.

    In real time, event time is the wall clock and each interval is waited out. In
    fast mode, event time starts at ``start`` and advances one interval per step
    without waiting: hours of driving in seconds, for tests and benchmarks.
    """

    def __init__(
        self,
        settings: Settings,
        trucks: list[Truck],
        realtime: bool = True,
        mqtt_version: str = "5",
        keys: dict[str, bytes] | None = None,
        certs: dict[str, ClientCert] | None = None,
    ) -> None:
        self.settings = settings
        self.trucks = trucks
        self.realtime = realtime
        # MQTT 5 or 3.1.1; a device with a key signs (in an envelope on 3.1.1)
        self.mqtt_version = mqtt_version
        self.keys = keys or {}
        # a device with a certificate logs in with it (the settings' mqtts:// URL)
        self.certs = certs or {}
        self.clients: dict[str, mqtt.Client] = {}
        self.failovers: dict[str, Failover] = {}
        self.published = 0
        self.pace_s = 0.0  # fast mode: wall seconds between steps (0: no wait)
        # What each device published, by message id, and what the broker acknowledged:
        # (device, seq), counted on the PUBACK (resends after a failover included).
        self.sent: dict[str, dict[int, int]] = {}
        self.acked: set[tuple[str, int]] = set()
        # A PUBACK may be handled (on paho's thread) before publish() has returned the
        # mid here: such a mid waits in _early until _publish records its seq.
        self._early: dict[str, set[int]] = {}
        self._acks = threading.Lock()
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self.transport = FlakyTransport()

    def connect(self) -> None:
        """Log every device in, with a retained ``online`` status and an ``offline`` will.
        With several broker URLs (a cluster's nodes), the trucks start spread over them
        and each moves to the next when its node is lost."""
        addresses = broker_addresses(self.settings)
        for i, truck in enumerate(self.trucks):
            c = make_client(
                self.settings,
                truck.device_id,
                device_password(self.settings.device_secret, truck.device_id),
                client_id=truck.device_id,
                version=self.mqtt_version,
                cert=self.certs.get(truck.device_id),
            )
            c.on_publish = partial(self._on_publish, truck.device_id)
            will = wire.encode(wire.StatusV1(v=1, state="offline"))
            c.will_set(wire.topic_for(truck.device_id, "status"), will, qos=1, retain=True)
            failover = Failover(c, addresses, first=i)
            failover.start(keepalive=60)
            self.failovers[truck.device_id] = failover
            if not failover.connected.wait(10):
                raise RuntimeError(f"device {truck.device_id} could not connect to the broker")
            online = wire.StatusV1(v=1, state="online", fw="sim-1.0", t=datetime.now(UTC))
            c.publish(wire.topic_for(truck.device_id, "status"), wire.encode(online), 1, True)
            self.clients[truck.device_id] = c

    def _on_publish(
        self, device_id: str, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any
    ) -> None:
        with self._acks:
            seq = self.sent.get(device_id, {}).get(mid)
            if seq is not None:
                self.acked.add((device_id, seq))
            else:
                self._early.setdefault(device_id, set()).add(mid)

    def inject_breach(self, device_id: str) -> None:
        """Cut a seal of one truck now (its report goes out at once)."""
        truck = next(t for t in self.trucks if t.device_id == device_id)
        self._publish(device_id, "seal", truck.breach(datetime.now(UTC)))

    def _publish(self, device_id: str, kind: str, model: wire.Uplink) -> None:
        topic = wire.topic_for(device_id, kind)
        key = self.keys.get(device_id)
        payload, props = signed(key, topic, wire.encode(model), self.mqtt_version)
        info = self.clients[device_id].publish(topic, payload, qos=1, properties=props)
        seq = getattr(model, "seq", None)
        with self._acks:
            early = info.mid in self._early.get(device_id, ())
            self._early.get(device_id, set()).discard(info.mid)
            if seq is not None:
                self.sent.setdefault(device_id, {})[info.mid] = seq
                if early:
                    self.acked.add((device_id, seq))
        # Published while the broker is away: paho keeps it and sends it on reconnect,
        # but its handle cannot be waited on; only those sent now are tracked.
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._pending.append(info)
        self.published += 1

    def run(
        self,
        steps: int | None = None,
        start: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Publish ``steps`` reporting intervals (forever when None) for every truck."""
        stop = stop or threading.Event()
        interval = self.trucks[0].interval_s if self.trucks else 10.0
        t0 = start or datetime.now(UTC)
        wall0 = time.monotonic()
        for truck in self.trucks:
            for seal in truck.arm_seals(t0):
                self._publish(truck.device_id, "seal", seal)
        k = 0
        while (steps is None or k < steps) and not stop.is_set():
            k += 1
            if self.realtime:
                if stop.wait(max(0.0, wall0 + k * interval - time.monotonic())):
                    break
                t = datetime.now(UTC)
            else:
                t = t0 + timedelta(seconds=k * interval)
                if self.pace_s and stop.wait(max(0.0, wall0 + k * self.pace_s - time.monotonic())):
                    break
            for truck in self.trucks:
                telemetry, seals = truck.step(t)
                out: list[tuple[str, wire.Uplink]] = [("seal", x) for x in seals]
                if telemetry is not None:
                    out.append(("telemetry", telemetry))
                for kind, model in self.transport.deliver(truck, out):
                    self._publish(truck.device_id, kind, model)
            self._prune()
        for device_id, kind, model in self.transport.drain():
            self._publish(device_id, kind, model)
        self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the broker has acknowledged every message published."""
        deadline = time.monotonic() + timeout
        for info in self._pending:
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except RuntimeError:  # the connection dropped meanwhile; paho resends
                continue
        self._prune()

    def _prune(self) -> None:
        keep = []
        for info in self._pending:
            try:
                if not info.is_published():
                    keep.append(info)
            except RuntimeError:
                continue
        self._pending = keep

    def close(self) -> None:
        """Disconnect every device (a clean disconnect: no last will)."""
        for device_id, c in self.clients.items():
            off = json.dumps({"v": 1, "state": "offline"}).encode()
            info = c.publish(wire.topic_for(device_id, "status"), off, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(RuntimeError):
                    info.wait_for_publish(5)
            self.failovers[device_id].stop()
        self.clients.clear()
        self.failovers.clear()
