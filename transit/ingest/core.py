"""What every ingest worker does with a batch, whatever its source.

A source hands a worker batches of raw messages and takes their acknowledgements back:
the MQTT worker (:mod:`transit.ingest.worker`, shared subscriptions on Mosquitto) and
the clustered broker's worker (:mod:`transit.cluster.amqp_worker`, the quorum queue
over AMQP). Between the two, the same steps: know the senders, bring the pipeline up
to the database, run the batch through :func:`transit.ingest.transaction.ingest` in
one transaction, commit, count; and the same duties on the clock
(:class:`~transit.ingest.watchdog.Watchdog`). The source acknowledges only after
:meth:`BatchWriter.store` has returned: the commit came first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from transit.config import Settings
from transit.db import devices, rule_state, store, workers
from transit.geofence.borders import Borders
from transit.ingest import transaction
from transit.ingest.membership import Membership
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.stats import Stats
from transit.ingest.storage import load_pipeline
from transit.ingest.types import DeadLetter
from transit.ingest.watchdog import Watchdog

log = logging.getLogger(__name__)


class BatchWriter:
    """One worker's database side: its connection, pipeline, counters and watchdog."""

    def __init__(
        self,
        settings: Settings,
        client_id: str,
        refresh_s: float,
        pipeline: Pipeline,
        borders: Borders | None,
        membership: Membership,
        halt: threading.Event,
        backlog: Callable[[], tuple[int, int]],
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.refresh_s = refresh_s
        self.pipeline = pipeline
        self.membership = membership
        self.stats = Stats()
        self._borders = borders
        self._halt = halt  # give up retrying a database that is away
        self._backlog = backlog  # (messages waiting in the worker, its bound)
        self._started = datetime.now(UTC)
        self._conn: psycopg.Connection[Any] | None = None
        self._geo_signature = ""
        self._last_refresh = 0.0
        self._last_snapshot = 0.0
        self._not_found: dict[str, float] = {}  # unknown sender -> when to ask again
        self.drained: float | None = None  # when it last had nothing in hand (monotonic)
        self.watchdog = Watchdog(
            settings,
            membership,
            pipeline,
            self.db,
            self._refresh,
            self.lost,
            self._raised,
            self.stats.note,
        )

    def db(self) -> psycopg.Connection[Any]:
        """The worker's connection, made again (and again) while the database is away."""
        while self._conn is None or self._conn.closed:
            try:
                self._conn = self.membership.connect()
                store.prepare_session(self._conn)
                self._last_refresh = 0.0
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying", exc)
                self._conn = None
                if self._halt.wait(1.0):
                    raise
        return self._conn

    def lost(self) -> None:
        """The connection broke: the next use makes a new one."""
        self._conn = None

    def close(self) -> None:
        """Close the connection (at the end of the worker's run)."""
        if self._conn is not None:
            self._conn.close()

    def _refresh(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        if now - self._last_refresh < self.refresh_s:
            return
        self._geo_signature = load_pipeline(conn, self.pipeline, self._borders, self._geo_signature)
        conn.commit()
        self._last_refresh = now

    def _look_up_senders(self, conn: psycopg.Connection[Any], raws: Sequence[RawMessage]) -> None:
        """Senders not known yet are looked up (a device registered since the last
        refresh); one still unknown is not asked about again for two seconds."""
        now = time.monotonic()
        unknown = set()
        for raw in raws:
            parts = raw.topic.split("/")
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

    def store(self, raws: Sequence[RawMessage], oldest: float) -> None:
        """Write one batch and commit it, retrying across lost connections (the batch
        is written once: a failed transaction wrote nothing). ``oldest`` is when the
        batch's first message arrived (monotonic), for the acknowledgement lag."""
        while True:
            conn = self.db()
            try:
                self._look_up_senders(conn, raws)
                self._refresh(conn)
                written = transaction.ingest(
                    conn, self.pipeline, raws, datetime.now(UTC), self.client_id
                )
                result, rows = written.result, written.rows
                t0 = time.monotonic()
                self._save_stats(conn)
                conn.commit()
                written.timings["commit"] = (time.monotonic() - t0) * 1000
                self.stats.commit_ms.observe(written.timings["write"] + written.timings["commit"])
                self.stats.note(written, batch=True)
                break
            except psycopg.OperationalError as exc:
                log.warning("batch not committed (%s); reconnecting and retrying", exc)
                self._conn = None
                self._last_refresh = 0.0
                if self._halt.wait(0.5):
                    raise
        self._count(len(raws), rows, len(result.fixes), result.dead_letters)
        self.stats.filtered_fixes.update(f.reason for f in result.filtered)
        lag = (time.monotonic() - oldest) * 1000
        self.stats.ack_lag_ms.observe(lag)
        self.stats.last_ack_lag_ms = lag
        self._raised(len(written.alert_ids))

    def _save_stats(self, conn: psycopg.Connection[Any]) -> None:
        """Store the counters (at most once a second) in the batch's own transaction."""
        now = time.monotonic()
        if now - self._last_snapshot < 1.0:
            return
        self._last_snapshot = now
        depth, limit = self._backlog()
        self.stats.queue_depth = depth
        self.stats.reaps = self.membership.reaps
        snap = self.stats.as_json()
        snap["queue_limit"] = limit
        workers.save(conn, self.client_id, os.getpid(), self._started, snap)
        if self.drained is not None:
            rule_state.note_drained(conn, self.client_id, now - self.drained)

    def _raised(self, n: int) -> None:
        """Count alerts just committed. Nothing is published: the live feed and the
        webhooks read the alerts table, which is the one record."""
        self.stats.alerts_raised += n

    def idle(self, asked: float) -> None:
        """Nothing came after all it had was acknowledged (the source held nothing back
        for this worker when it started waiting at ``asked``): say so, so that
        /health/ingest tells idle from dead and a gap in a device's seqs can be
        known lost."""
        self.drained = asked
        try:
            conn = self.db()
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
