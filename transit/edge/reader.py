"""``transit edge``: read GNSS and e-seal ports, queue every reading on disk, publish it.

One thread per port: it opens the port with pyserial, reads, decodes and appends to
the outbox; when the port fails (unplugged), it closes it and reopens with backoff,
never touching the other ports. One publisher thread drains the outbox in order
over MQTT at QoS 1 and deletes a reading only when the broker has acknowledged it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import serial

from transit.config import Settings
from transit.devices import payload as wire
from transit.devices.eseal import SealFrame
from transit.devices.nmea import NmeaFix
from transit.devices.stream import PortDecoder, Reject
from transit.edge.outbox import Outbox
from transit.mqtt import make_client, signed

log = logging.getLogger(__name__)
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason: accepted, but routed to nobody


def reading_body(item: NmeaFix | SealFrame) -> tuple[str, dict[str, Any]]:
    """The outbox entry of a reading: its MQTT kind and payload without ``v`` and ``seq``."""
    if isinstance(item, NmeaFix):
        fix: dict[str, Any] = {
            "t": item.time.isoformat().replace("+00:00", "Z"),
            "lat": round(item.lat, 7),
            "lon": round(item.lon, 7),
        }
        if item.speed_kmh is not None:
            fix["speed_kmh"] = min(item.speed_kmh, 400.0)
        if item.course_deg is not None and 0 <= item.course_deg < 360:
            fix["course_deg"] = item.course_deg
        return "telemetry", {"fixes": [fix]}
    body: dict[str, Any] = {
        "seal_id": item.seal_id,
        "t": item.clock.isoformat().replace("+00:00", "Z"),
        "status": item.status.value,
        "counter": item.counter,
    }
    if item.battery_pct is not None:
        body["battery_pct"] = item.battery_pct
    if item.lat is not None and item.lon is not None:
        body["lat"], body["lon"] = item.lat, item.lon
    return "seal", body


@dataclass
class EdgeConfig:
    """What one edge reader serves."""

    device_id: str
    password: str
    ports: list[str]
    outbox_path: Path
    baudrate: int = 9600
    key: bytes | None = None
    window: int = 200  # messages in flight before waiting for acknowledgements
    # "3.1.1": no user properties, so a key signs in an envelope; no PUBACK reason
    # codes either, so a message nobody took cannot be told from one delivered
    mqtt_version: str = "5"


class PortReader(threading.Thread):
    """Reads one port forever, reopening it with backoff when it fails."""

    def __init__(self, path: str, outbox: Outbox, baudrate: int, stop: threading.Event) -> None:
        super().__init__(name=f"port {path}", daemon=True)
        self.path, self.outbox, self.baudrate, self.stop_event = path, outbox, baudrate, stop
        self.readings = 0
        self.reopens = 0

    def run(self) -> None:
        backoff = 0.1
        decoder = PortDecoder()
        while not self.stop_event.is_set():
            try:
                with serial.Serial(self.path, self.baudrate, timeout=0.2) as port:
                    log.info("port %s open", self.path)
                    backoff = 0.1
                    while not self.stop_event.is_set():
                        data = port.read(4096)
                        if data:
                            self._handle(decoder.receive_data(data))
            except (serial.SerialException, OSError) as exc:
                log.warning("port %s failed (%s); reopening in %.1f s", self.path, exc, backoff)
                self.reopens += 1
                decoder = PortDecoder()  # half a frame from before the failure is gone
                if self.stop_event.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)

    def _handle(self, items: list[NmeaFix | SealFrame | Reject]) -> None:
        good: list[tuple[str, dict[str, Any]]] = []
        for item in items:
            if isinstance(item, Reject):
                log.warning("port %s: refused %s: %s", self.path, item.reason, item.raw.hex())
                self.outbox.reject(self.path, item.reason, item.raw)
            else:
                good.append(reading_body(item))
        if good:
            self.outbox.put_many(good)
            self.readings += len(good)


class Publisher:
    """Drains the outbox in order at QoS 1; a reading is deleted on its PUBACK."""

    def __init__(self, settings: Settings, config: EdgeConfig, outbox: Outbox) -> None:
        self.config, self.outbox = config, outbox
        self.client = make_client(
            settings,
            config.device_id,
            config.password,
            client_id=f"edge-{config.device_id}",
            version=config.mqtt_version,
        )
        self.settings = settings
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._acked: list[int] = []
        self._early: set[int] = set()  # PUBACKs that beat the bookkeeping of their publish
        self._generation = 0  # one per connection: a batch fetched before a reconnect is void
        self._rewind: int | None = None  # lowest seq that found no subscriber
        self._sent_upto = 0
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        will = wire.encode(wire.StatusV1(v=1, state="offline"))
        self.client.will_set(wire.topic_for(config.device_id, "status"), will, 1, retain=True)

    def _on_connect(self, client: mqtt.Client, ud: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused %s: %s", self.config.device_id, reason)
            return
        online = wire.encode(wire.StatusV1(v=1, state="online", fw="edge-1"))
        client.publish(wire.topic_for(self.config.device_id, "status"), online, 1, retain=True)
        with self._lock:
            # Everything not yet acknowledged is sent again, in order.
            self._inflight.clear()
            self._early.clear()
            self._sent_upto = 0
            self._generation += 1
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, ud: Any, flags: Any, reason: Any, p: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, ud: Any, mid: int, reason: Any, p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused message %d: %s", mid, reason)
            return  # not deleted: sent again after the next reconnect
        if reason.value == NO_MATCHING_SUBSCRIBERS:
            # Nobody took it (transit's ingest not subscribed yet, e.g. just after a
            # broker restart): keep it, and send it again from there in a moment.
            with self._lock:
                seq = self._inflight.pop(mid, None)
                if seq is not None:
                    self._rewind = min(self._rewind or seq, seq)
            return
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
            else:
                self._acked.append(seq)

    def message(self, seq: int, kind: str, body: str) -> tuple[str, bytes]:
        """The topic and bytes of outbox entry ``seq``: the same bytes every time it is sent."""
        payload = b'{"v":1,"seq":' + str(seq).encode() + b"," + body[1:].encode()
        return wire.topic_for(self.config.device_id, kind), payload

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop``; reconnects by itself when the broker goes away."""
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=10)
        self.client.reconnect_delay_set(1, 5)
        self.client.loop_start()
        try:
            while not stop.is_set():
                with self._lock:
                    acked, self._acked = self._acked, []
                self.outbox.remove(acked)
                if not self._connected.wait(0.2):
                    continue
                with self._lock:
                    if self._rewind is not None:
                        # Start again from the first reading nobody took, after a pause.
                        self._sent_upto = min(self._sent_upto, self._rewind - 1)
                        self._rewind = None
                        self._generation += 1
                        self._inflight.clear()
                        rewound = True
                    else:
                        rewound = False
                    room = self.config.window - len(self._inflight)
                    after = self._sent_upto
                    generation = self._generation
                if rewound:
                    time.sleep(0.5)
                    continue
                if room <= 0:
                    time.sleep(0.005)
                    continue
                rows = self.outbox.after(after, room)
                if not rows:
                    time.sleep(0.02)
                    continue
                for seq, kind, body in rows:
                    topic, body_bytes = self.message(seq, kind, body)
                    payload, props = signed(
                        self.config.key, topic, body_bytes, self.config.mqtt_version
                    )
                    if not self._connected.is_set():
                        break
                    # Never call paho holding our lock: its thread calls us back holding its own.
                    info = self.client.publish(topic, payload, qos=1, properties=props)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        break
                    with self._lock:
                        if generation != self._generation:
                            break  # reconnected meanwhile: start again from the oldest
                        if info.mid in self._early:
                            self._early.discard(info.mid)
                            self._acked.append(seq)
                        else:
                            self._inflight[info.mid] = seq
                        self._sent_upto = seq
        finally:
            with self._lock:
                acked, self._acked = self._acked, []
            self.outbox.remove(acked)
            self.client.disconnect()
            self.client.loop_stop()


def run_edge(settings: Settings, config: EdgeConfig, stop: threading.Event) -> None:
    """Run the port readers and the publisher until ``stop``."""
    outbox = Outbox(config.outbox_path)
    readers = [PortReader(p, outbox, config.baudrate, stop) for p in config.ports]
    for r in readers:
        r.start()
    try:
        Publisher(settings, config, outbox).run(stop)
    finally:
        for r in readers:
            r.join(2)
        log.info("edge stopped with %d readings waiting", outbox.pending())
        outbox.close()
