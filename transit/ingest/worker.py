"""The ingest worker: a shared-subscription MQTT consumer that commits, then acknowledges.

paho's network thread hands messages to a bounded queue (when the database is slower
than the broker, the queue fills, paho stops reading, and the broker holds the rest:
backpressure, with memory bounded). The main thread takes batches by size or age,
runs the pipeline, writes the batch in one transaction with COPY, and only then
sends the PUBACKs. A crash before the commit loses nothing: the broker redelivers,
and ``(device_id, seq)`` makes the second write a no-op.

Workers come and go (:mod:`transit.ingest.membership`): each owns a slot of its group
in the database; a stopped worker (SIGTERM) takes its session out of the group and
ends it, once empty; a dead one's session is drained by a live worker into this same
queue and batch path. The wall-clock rules and the retention run in the one process
that holds the watchdog lease.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from transit.config import Settings
from transit.geofence.borders import Borders
from transit.ingest import session
from transit.ingest.core import BatchWriter
from transit.ingest.membership import Membership
from transit.ingest.pipeline import Pipeline
from transit.ingest.session import Item, Link, message_handler
from transit.mqtt import connect_properties

log = logging.getLogger(__name__)

DEVICE_TOPICS = "transit/v1/devices/+/+"
LEAVE_S = 30.0  # a stopping worker gives up waiting for its session to empty after this
FENCED = 3  # exit status of a worker whose slot was taken from it


@dataclass
class WorkerConfig:
    """Tunables of one worker."""

    batch_size: int = 2000
    max_age_ms: float = 50.0
    queue_limit: int = 20000
    refresh_s: float = 2.0
    client_id: str = "transit-ingest-0"  # the slot: one process at a time uses it
    group: str = "ingest"  # the shared-subscription group: $share/<group>/...
    keepalive: int = session.KEEPALIVE_S

    @property
    def subscription(self) -> str:
        """The topic filter this worker subscribes to."""
        return f"$share/{self.group}/{DEVICE_TOPICS}"


class IngestWorker:
    """One ingest process: MQTT in, TimescaleDB out, acknowledgements after commit."""

    def __init__(
        self,
        settings: Settings,
        config: WorkerConfig,
        *,
        client: mqtt.Client,
        pipeline: Pipeline,
        borders: Borders | None,
    ) -> None:
        """Built by :func:`transit.bootstrap.ingest_worker`, which wires the real
        client, the pipeline with the settings' filter bounds and the border file."""
        self.settings = settings
        self.config = config
        self._queue: queue.Queue[Item] = queue.Queue(self.config.queue_limit)
        self._leaving = False  # stopping: never subscribe again
        self._stop = threading.Event()  # leave the group
        self._halt = threading.Event()  # give up now (asked twice): the session stays
        self.pipeline = pipeline
        self.client = client
        self.membership = Membership(
            settings,
            self.config.group,
            self.config.client_id,
            self.config.subscription,
            self._queue,
            self._stop,
            self._halt,
        )
        self.writer = BatchWriter(
            settings,
            config.client_id,
            config.refresh_s,
            pipeline,
            borders,
            self.membership,
            self._halt,
            lambda: (self._queue.qsize(), self.config.queue_limit),
        )
        self.stats = self.writer.stats
        self.watchdog = self.writer.watchdog
        self.link = Link(self.client, own=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.link.new_connection()
        self.client.on_subscribe = lambda *_: self.membership.subscribed.set()
        self.client.on_message = message_handler(self.link, self._queue)

    # -- MQTT side (paho's thread) -------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused ingest: %s", reason)
            return
        # A message id belongs to one connection: acknowledgements owed on the previous
        # one are dropped, and the broker redelivers those messages on this one.
        self.link.new_connection()
        if not self._leaving:
            client.subscribe(self.config.subscription, qos=1)
            log.info("ingest subscribed to %s", self.config.subscription)

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

    def _commit(self, batch: list[Item]) -> None:
        self.writer.store([it[2] for it in batch], batch[0][3])
        for mid, qos, _, _, link, gen in batch:
            link.settle(mid, qos, gen)
        self.stats.reaped_messages += sum(1 for it in batch if not it[4].own)

    def _turn(self) -> None:
        """One turn of the main loop: a batch (or an idle report), the watchdog's due."""
        asked = time.monotonic()
        batch = self._take_batch()
        if batch:
            self._commit(batch)
        else:
            # Nothing came after all it had was acknowledged: the broker held nothing
            # back for this worker when it started waiting (it was drained).
            self.writer.idle(asked)
        self.watchdog.run_due()

    def run(self) -> int:
        """Consume until SIGTERM/SIGINT or :meth:`stop`, then leave the group. Returns
        the exit status: 0, or :data:`FENCED` when the slot was taken from this worker."""
        if not self.membership.claim():
            return 0
        self.client.connect(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=self.config.keepalive,
            clean_start=False,
            properties=connect_properties(session.SESSION_EXPIRY_S),
        )
        self.client.loop_start()
        try:
            while not self._stop.is_set() and not self.membership.fenced.is_set():
                self._turn()
            if self.membership.fenced.is_set():
                # Someone drains this session now: touch nothing, say nothing, go.
                session.abandon(self.client, self.link)
                return FENCED
            self._leave()
            return 0
        finally:
            self.client.loop_stop()
            self.writer.close()

    def _leave(self) -> None:
        """Stop gracefully. While another member runs: unsubscribe (what the session
        holds still comes), process and acknowledge until quiet, end the session
        (expiry 0) and check that the broker has none left. As the last member: keep
        the session, which holds what is published until a worker comes back."""
        while self.membership.reaping:  # a dead member's session: drained to its end
            self._turn()
        if not self.membership.leave():
            deadline = time.monotonic() + 5
            while not self._queue.empty() and time.monotonic() < deadline:
                self._turn()
            self.client.disconnect()  # normal: the session and its subscription stay
            self.membership.finish("parked")
            log.info("%s parked: the last member keeps its session", self.config.client_id)
            return
        self._leaving = True
        deadline = time.monotonic() + LEAVE_S

        def turn() -> bool:
            self._turn()
            return time.monotonic() < deadline and not self._halt.is_set()

        if not self.link.empty(self.config.subscription, turn):
            log.warning("session of %s not emptied; left for a reaper", self.config.client_id)
            self.membership.finish("leaving")
            return
        session.expire(self.client)
        report = self._drain_own()
        self.membership.finish("left" if report.gone else "leaving", report.messages)
        log.info(
            "%s left its group: session %s (%d more messages on checking)",
            self.config.client_id,
            "gone" if report.gone else f"still there ({report.reason})",
            report.messages,
        )

    def _drain_own(self) -> session.DrainReport:
        """Connect to this worker's session again: none left (the broker read the
        DISCONNECT), or drain it like a dead member's; batches go on meanwhile."""
        reports: list[session.DrainReport] = []
        halt = threading.Event()
        job = threading.Thread(
            target=lambda: reports.append(
                session.drain(
                    self.settings,
                    self.config.client_id,
                    self.config.subscription,
                    self._queue,
                    halt,
                )
            ),
            daemon=True,
        )
        job.start()
        deadline = time.monotonic() + LEAVE_S
        while job.is_alive():
            self._turn()
            if time.monotonic() > deadline:
                halt.set()
        job.join()
        return reports[0] if reports else session.DrainReport(reason="drain failed")

    def stop(self) -> None:
        """Ask :meth:`run` to leave the group after the batch in hand; asked again,
        to stop retrying a database that is away (the session then stays for a
        reaper, nothing is lost)."""
        if self._stop.is_set():
            self._halt.set()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
