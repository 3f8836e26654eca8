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
import os
import queue
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from transit import retention
from transit.broker import ALERT_TOPIC
from transit.config import Settings
from transit.db import alerts as alert_rows
from transit.db import devices, server, store, workers
from transit.geofence import borders
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.storage import load_pipeline, write_result
from transit.ingest.types import DeadLetter
from transit.lifecycle import LifecycleEvent
from transit.mqtt import connect_properties, make_client
from transit.rules.filters import FixFilters

log = logging.getLogger(__name__)

DEVICE_TOPICS = "transit/v1/devices/+/+"
# mid, qos, message, monotonic receive time, connection it came on
Item = tuple[int, int, RawMessage, float, int]
WATCHDOG_S = 5.0  # how often the wall-clock rules run


@dataclass
class WorkerConfig:
    """Tunables of one worker."""

    batch_size: int = 2000
    max_age_ms: float = 50.0
    queue_limit: int = 20000
    refresh_s: float = 2.0
    client_id: str = "transit-ingest-0"
    group: str = "ingest"  # the shared-subscription group: $share/<group>/...
    watchdog: bool = True  # run the wall-clock rules (one worker of a group does)

    @property
    def subscription(self) -> str:
        """The topic filter this worker subscribes to."""
        return f"$share/{self.group}/{DEVICE_TOPICS}"


BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclass
class Histogram:
    """Bucket counts (non-cumulative) and the sum, as Prometheus histograms need."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        i = next((k for k, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.total += value

    def as_json(self) -> dict[str, Any]:
        """The histogram as stored."""
        return {"bounds": list(self.bounds), "counts": self.counts, "sum": self.total}


@dataclass
class Stats:
    """Counters a worker keeps; written to ``ingest_workers`` and exported at /metrics."""

    messages_in: int = 0
    rows_written: int = 0
    duplicates: int = 0
    batches: int = 0
    alerts_raised: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    filtered_fixes: Counter[str] = field(default_factory=Counter)  # by reason
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    commit_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))
    ack_lag_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))
    queue_depth: int = 0
    last_ack_lag_ms: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The snapshot stored for /metrics."""
        return {
            "messages_in": self.messages_in,
            "rows_written": self.rows_written,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "alerts_raised": self.alerts_raised,
            "dead_letters": dict(self.dead_letters),
            "filtered_fixes": dict(self.filtered_fixes),
            "batch_size": self.batch_size.as_json(),
            "commit_ms": self.commit_ms.as_json(),
            "ack_lag_ms": self.ack_lag_ms.as_json(),
            "queue_depth": self.queue_depth,
            "last_ack_lag_ms": self.last_ack_lag_ms,
        }


class IngestWorker:
    """One ingest process: MQTT in, TimescaleDB out, acknowledgements after commit."""

    def __init__(self, settings: Settings, config: WorkerConfig | None = None) -> None:
        self.settings = settings
        self.config = config or WorkerConfig()
        self.stats = Stats()
        self._queue: queue.Queue[Item] = queue.Queue(self.config.queue_limit)
        self._started = datetime.now(UTC)
        self._generation = 0
        self._not_found: dict[str, float] = {}  # unknown sender -> when to ask again
        self._last_tick = time.monotonic()
        self._last_retention: float | None = None
        self._last_snapshot = 0.0
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self.pipeline = Pipeline()
        self.pipeline.filters = FixFilters(
            settings.filter_future_s, settings.filter_stale_s, settings.filter_max_hdop
        )
        self._geo_signature = ""
        path = borders.default_path()
        self._borders = borders.load(path) if path.exists() else None
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
        # A message id belongs to one connection: acknowledgements owed on the previous
        # one are dropped, and the broker redelivers those messages on this one.
        self._generation += 1
        client.subscribe(self.config.subscription, qos=1)
        log.info("ingest subscribed to %s", self.config.subscription)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Blocks when the queue is full: paho stops reading and the broker holds on.
        sig = None
        props = getattr(msg, "properties", None)
        for name, value in getattr(props, "UserProperty", None) or []:
            if name == "sig":
                sig = value
        raw = RawMessage(msg.topic, bytes(msg.payload), sig)
        self._queue.put((msg.mid, msg.qos, raw, time.monotonic(), self._generation))

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
        self._geo_signature = load_pipeline(conn, self.pipeline, self._borders, self._geo_signature)
        conn.commit()
        self._last_refresh = now

    def _take_batch(self) -> list[Item]:
        batch: list[Item] = []
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

    def _look_up_senders(self, conn: psycopg.Connection[Any], batch: list[Item]) -> None:
        """Senders not known yet are looked up (a device registered since the last
        refresh); one still unknown is not asked about again for two seconds."""
        now = time.monotonic()
        unknown = set()
        for item in batch:
            parts = item[2].topic.split("/")
            dev = parts[3] if len(parts) > 3 else None
            if dev and dev not in self.pipeline.devices and self._not_found.get(dev, 0.0) < now:
                unknown.add(dev)
        if not unknown:
            return
        found = devices.hmac_keys(conn, sorted(unknown))
        if found:
            self._last_refresh = 0.0  # their transits may be new too
        for dev in unknown - found.keys():
            self._not_found[dev] = now + 2.0

    def _commit(self, batch: list[Item]) -> None:
        while True:
            conn = self._db()
            try:
                self._look_up_senders(conn, batch)
                self._refresh(conn)
                result = self.pipeline.process(
                    [m for _, _, m, _, _ in batch], now=datetime.now(UTC)
                )
                t0 = time.monotonic()
                rows, alert_ids = write_result(conn, result)
                alerts = [alert_rows.as_published(conn, i) for i in alert_ids]
                self._save_stats(conn)
                conn.commit()
                self.stats.commit_ms.observe((time.monotonic() - t0) * 1000)
                break
            except psycopg.OperationalError as exc:
                log.warning("batch not committed (%s); reconnecting and retrying", exc)
                self._conn = None
                self._last_refresh = 0.0
                # Rule state may have advanced for a batch that was rolled back.
                self.pipeline.reset_state()
                if self._stop.wait(0.5):
                    raise
        for mid, qos, _, _, gen in batch:
            if qos > 0 and gen == self._generation:
                self.client.ack(mid, qos)
        self._count(len(batch), rows, len(result.fixes), result.dead_letters)
        self.stats.filtered_fixes.update(f.reason for f in result.filtered)
        lag = (time.monotonic() - batch[0][3]) * 1000  # the oldest message of the batch
        self.stats.ack_lag_ms.observe(lag)
        self.stats.last_ack_lag_ms = lag
        self._publish_alerts(alerts)

    def _save_stats(self, conn: psycopg.Connection[Any]) -> None:
        """Store the counters (at most once a second) in the batch's own transaction."""
        now = time.monotonic()
        if now - self._last_snapshot < 1.0:
            return
        self._last_snapshot = now
        self.stats.queue_depth = self._queue.qsize()
        snap = self.stats.as_json()
        snap["queue_limit"] = self.config.queue_limit
        workers.save(conn, self.config.client_id, os.getpid(), self._started, snap)

    def _watchdog(self) -> None:
        """Wall-clock rules (silence, overdue) over the transits this worker has heard."""
        self._last_tick = time.monotonic()
        if not self.config.watchdog:
            return
        try:
            conn = self._db()
            # Any worker may have heard a device last: the database knows which did.
            seen = devices.last_seen(conn, list(self.pipeline.transits))
            now = server.now(conn)
            conn.commit()
            self.pipeline.last_received = seen
            changes: list[LifecycleEvent] = []
            events = self.pipeline.tick(now, changes)
            if not events and not changes:
                return
            _, alert_ids = store.write_batch(conn, [], [], [], events)
            store.apply_lifecycle(conn, changes)
            alerts = [alert_rows.as_published(conn, i) for i in alert_ids]
            conn.commit()
        except psycopg.OperationalError:
            self._conn = None
            self.pipeline.reset_state()  # those alerts were not written: find them again
            return
        self._publish_alerts(alerts)

    def _retention_due(self) -> bool:
        last = self._last_retention
        return last is None or time.monotonic() - last >= retention.EVERY_S

    def _retention(self) -> None:
        """Drop telemetry past the retention (once at start, then hourly). The worker
        that runs the wall-clock rules does it: there is one per ingest group, and
        ingest runs wherever data arrives. Its own connection keeps a failure (a
        chunk locked elsewhere) away from the batches."""
        self._last_retention = time.monotonic()
        days = self.settings.retention_days
        if days is None:
            return
        try:
            with psycopg.connect(self.settings.database_url, connect_timeout=5) as conn:
                now = server.now(conn)
                report = retention.run(conn, days, now, actor="ingest")
                conn.commit()
        except psycopg.Error as exc:
            log.warning("retention not run (%s); next try in an hour", exc)
            return
        held = [w.mrn for w in report.held_by]
        log.info(
            "retention (%d days): %d chunks dropped; held by %d transits %s",
            days,
            sum(len(v) for v in report.dropped.values()),
            len(held),
            held[:5],
        )

    def _publish_alerts(self, alerts: list[dict[str, Any] | None]) -> None:
        """Tell live consumers of the alerts just committed."""
        self.stats.alerts_raised += len(alerts)
        for a in alerts:
            if a is not None:
                self.client.publish(ALERT_TOPIC, json.dumps(a), qos=1)

    def _idle(self) -> None:
        """With nothing to do, still say so: /health/ingest tells idle from dead."""
        try:
            conn = self._db()
            self._save_stats(conn)
            conn.commit()
        except psycopg.OperationalError:
            self._conn = None

    def _count(self, n: int, rows: int, fixes: int, dead: list[DeadLetter]) -> None:
        st = self.stats
        st.messages_in += n
        st.rows_written += rows
        st.duplicates += fixes - rows
        st.batches += 1
        st.batch_size.observe(n)
        for d in dead:
            st.dead_letters[d.reason] += 1

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
                else:
                    self._idle()
                if time.monotonic() - self._last_tick >= WATCHDOG_S:
                    self._watchdog()
                if self.config.watchdog and self._retention_due():
                    self._retention()
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
