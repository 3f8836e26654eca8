"""The ingest worker on the clustered broker: batches from the quorum queue, acked after commit.

The same batch path as the MQTT worker (:class:`transit.ingest.core.BatchWriter`):
decode, rules, one transaction, commit; then the batch is acknowledged to the queue,
which forgets it only then. Workers are competing consumers of ``transit.ingest``: a
worker or a node that dies before its ack leaves its messages in the queue, delivered
again to whoever consumes next, and ``(device_id, seq)`` writes each once. So there
is no session to drain for a dead member (membership without reaping); the slot,
the heartbeat and the watchdog lease are as for the MQTT workers.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING

from transit.cluster.amqp_source import AmqpSource, Delivery
from transit.config import Settings
from transit.geofence.borders import Borders
from transit.ingest.core import BatchWriter
from transit.ingest.membership import Membership
from transit.ingest.pipeline import Pipeline, RawMessage

if TYPE_CHECKING:
    from transit.ingest.worker import WorkerConfig

log = logging.getLogger(__name__)


class AmqpIngestWorker:
    """One ingest process reading the cluster's ingest queue."""

    def __init__(
        self,
        settings: Settings,
        config: WorkerConfig,
        *,
        source: AmqpSource,
        pipeline: Pipeline,
        borders: Borders | None,
    ) -> None:
        """Built by :func:`transit.bootstrap.ingest_worker` when the settings name the
        cluster's AMQP URLs."""
        self.settings = settings
        self.config = config
        self.source = source
        self.pipeline = pipeline
        self._stop = threading.Event()
        self._halt = threading.Event()
        self.membership = Membership(
            settings,
            config.group,
            config.client_id,
            source.queue,
            queue.Queue(),  # nothing to drain into: the queue redelivers
            self._stop,
            self._halt,
            reap=False,
        )
        self.writer = BatchWriter(
            settings,
            config.client_id,
            config.refresh_s,
            pipeline,
            borders,
            self.membership,
            self._halt,
            lambda: (0, source.prefetch),
        )
        self.stats = self.writer.stats
        self.watchdog = self.writer.watchdog
        self.unacked_batches = 0  # committed, but their channel died before the ack

    def _turn(self) -> None:
        asked = time.monotonic()
        batch = self.source.next_batch(self.config.batch_size, self.config.max_age_ms / 1000)
        self.membership.subscribed.set()  # consuming: the slot's state is "running"
        if batch:
            self._commit(batch)
        else:
            self.writer.idle(asked)
        self.watchdog.run_due()

    def _commit(self, batch: list[Delivery]) -> None:
        raws = [RawMessage(d.topic, d.payload) for d in batch]
        self.writer.store(raws, time.monotonic())
        if not self.source.ack(batch):
            # Written; the queue delivers them again and the unique key drops them.
            self.unacked_batches += 1

    def run(self) -> int:
        """Consume until SIGTERM/SIGINT or :meth:`stop`. Unacked deliveries go back to
        the queue when the connection closes."""
        if not self.membership.claim():
            return 0
        try:
            while not self._stop.is_set() and not self.membership.fenced.is_set():
                self._turn()
            self.membership.leave()
            self.membership.finish("left")
            return 0
        finally:
            self.source.close()
            self.writer.close()

    def stop(self) -> None:
        """Stop after the batch in hand; asked twice, stop retrying the database."""
        if self._stop.is_set():
            self._halt.set()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
