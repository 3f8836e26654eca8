"""The ingest worker: a shared-subscription MQTT consumer that commits, then acknowledges.

paho's network thread hands messages to a bounded queue (when the database is slower
than the broker, the queue fills, paho stops reading, and the broker holds the rest:
backpressure, with memory bounded). The main thread takes batches by size or age,
runs the pipeline, writes the batch in one transaction with COPY, and only then
sends the PUBACKs. A crash before the commit loses nothing: the broker redelivers,
and ``(device_id, seq)`` makes the second write a no-op.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from transit.broker import ALERT_TOPIC
from transit.config import Settings
from transit.db import store
from transit.geofence.corridor import Corridor, build_corridor
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.mqtt import connect_properties, make_client

log = logging.getLogger(__name__)

SUBSCRIPTION = "$share/ingest/transit/v1/devices/+/+"


@dataclass
class WorkerConfig:
    """Tunables of one worker."""

    batch_size: int = 2000
    max_age_ms: float = 50.0
    queue_limit: int = 20000
    refresh_s: float = 2.0
    client_id: str = "transit-ingest-0"


@dataclass
class Stats:
    """Counters a worker keeps (exported as metrics)."""

    messages_in: int = 0
    rows_written: int = 0
    batches: int = 0
    alerts_raised: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


class IngestWorker:
    """One ingest process: MQTT in, TimescaleDB out, acknowledgements after commit."""

    def __init__(self, settings: Settings, config: WorkerConfig | None = None) -> None:
        self.settings = settings
        self.config = config or WorkerConfig()
        self.stats = Stats()
        self._queue: queue.Queue[tuple[int, int, RawMessage]] = queue.Queue(self.config.queue_limit)
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self.pipeline = Pipeline({})
        self._last_refresh = 0.0
        self.client = make_client(
            settings,
            settings.mqtt_ingest_user,
            settings.mqtt_ingest_password,
            client_id=self.config.client_id,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # -- MQTT side (paho's thread) -------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused ingest: %s", reason)
            return
        client.subscribe(SUBSCRIPTION, qos=1)
        log.info("ingest subscribed to %s", SUBSCRIPTION)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Blocks when the queue is full: paho stops reading and the broker holds on.
        sig = None
        props = getattr(msg, "properties", None)
        for name, value in getattr(props, "UserProperty", None) or []:
            if name == "sig":
                sig = value
        self._queue.put((msg.mid, msg.qos, RawMessage(msg.topic, bytes(msg.payload), sig)))

    # -- database side (main thread) --------------------------------------------------
    def _db(self) -> psycopg.Connection[Any]:
        while self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.settings.database_url, connect_timeout=5)
                store.prepare_session(self._conn)
                self._last_refresh = 0.0
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying", exc)
                self._conn = None
                if self._stop.wait(1.0):
                    raise
        return self._conn

    def _refresh(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        if now - self._last_refresh < self.config.refresh_s:
            return
        corridors: dict[str, Corridor] = {}
        for cid, name, width, route, countries, props in store.corridor_rows(conn):
            old = self.pipeline.corridors.get(cid)
            if (
                old is not None
                and old.width_m == width
                and list(old.route.coords) == [tuple(c) for c in route["coordinates"]]
            ):
                corridors[cid] = old
            else:
                corridors[cid] = build_corridor(
                    cid, name, route["coordinates"], width, countries, props
                )
        self.pipeline.corridors = corridors
        self.pipeline.devices = store.device_keys(conn)
        self.pipeline.set_transits(store.active_transits(conn), store.open_alert_keys(conn))
        conn.commit()
        self._last_refresh = now

    def _take_batch(self) -> list[tuple[int, int, RawMessage]]:
        batch: list[tuple[int, int, RawMessage]] = []
        try:
            batch.append(self._queue.get(timeout=0.2))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.config.max_age_ms / 1000
        while len(batch) < self.config.batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get_nowait()
                    if remaining <= 0
                    else self._queue.get(timeout=remaining)
                )
            except queue.Empty:
                break
            if remaining <= 0 and self._queue.empty():
                break
        return batch

    def _unknown_sender(self, batch: list[tuple[int, int, RawMessage]]) -> bool:
        known = self.pipeline.devices
        return any(
            m.topic.split("/")[3:4] and m.topic.split("/")[3] not in known for _, _, m in batch
        )

    def _commit(self, batch: list[tuple[int, int, RawMessage]]) -> None:
        while True:
            conn = self._db()
            try:
                if self._unknown_sender(batch) and time.monotonic() - self._last_refresh > 1.0:
                    self._last_refresh = 0.0  # a device registered since: look again
                self._refresh(conn)
                result = self.pipeline.process([m for _, _, m in batch])
                rows, alert_ids = store.write_batch(
                    conn, result.fixes, result.seal_events, result.dead_letters, result.alerts
                )
                alerts = [store.alert_as_json(conn, i) for i in alert_ids]
                conn.commit()
                break
            except psycopg.OperationalError as exc:
                log.warning("batch not committed (%s); reconnecting and retrying", exc)
                self._conn = None
                self._last_refresh = 0.0
                # Rule state may have advanced for a batch that was rolled back.
                self.pipeline.deviation.clear()
                if self._stop.wait(0.5):
                    raise
        for mid, qos, _ in batch:
            if qos > 0:
                self.client.ack(mid, qos)
        self.stats.messages_in += len(batch)
        self.stats.rows_written += rows
        self.stats.batches += 1
        self.stats.alerts_raised += len(alert_ids)
        for d in result.dead_letters:
            self.stats.dead_letters[d.reason] += 1
        for a in alerts:
            if a is not None:
                self.client.publish(ALERT_TOPIC, json.dumps(a), qos=1)

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT or :meth:`stop`."""
        self.client.connect(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=connect_properties(3600),
        )
        self.client.loop_start()
        try:
            while not self._stop.is_set():
                batch = self._take_batch()
                if batch:
                    self._commit(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self._conn is not None:
                self._conn.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
