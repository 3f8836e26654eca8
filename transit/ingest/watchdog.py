"""What the holder of the watchdog lease runs, in one process across every worker on
every machine (:mod:`transit.ingest.membership` holds the lease): the wall-clock rules
(silence, overdue) every few seconds, and the telemetry retention hourly.

Its input is the database, not the worker's memory: the transits under way, and when
each device was last heard (``devices.last_seen``, written by whichever worker took
the device's message), so it finds silence in messages other workers received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from transit import retention
from transit.config import Settings
from transit.db import alerts as alert_rows
from transit.db import devices, server, store
from transit.ingest.membership import Membership
from transit.ingest.pipeline import Pipeline
from transit.lifecycle import LifecycleEvent

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
TICK_S = 5.0  # how often the wall-clock rules run


class Watchdog:
    """The lease holder's duties, run from the worker's main loop (:meth:`run_due`)."""

    def __init__(
        self,
        settings: Settings,
        membership: Membership,
        pipeline: Pipeline,
        db: Callable[[], Conn],
        refresh: Callable[[Conn], None],
        lost: Callable[[], None],
        publish: Callable[[list[dict[str, Any] | None]], None],
    ) -> None:
        self.settings = settings
        self.membership = membership
        self.pipeline = pipeline
        self._db = db  # the worker's connection
        self._refresh = refresh  # brings the pipeline's transits up to the database
        self._lost = lost  # the worker's connection broke
        self._publish = publish
        self._last_tick = time.monotonic()
        self._last_retention: float | None = None

    def run_due(self) -> None:
        """Run what is due, if this process holds the lease."""
        if time.monotonic() - self._last_tick >= TICK_S:
            self._last_tick = time.monotonic()
            if self.membership.watchdog:
                self.tick()
        if self.membership.watchdog and self._retention_due():
            self.retention()

    def tick(self) -> None:
        """Silence and overdue over every transit under way."""
        try:
            conn = self._db()
            self._refresh(conn)
            seen = devices.last_seen(conn, list(self.pipeline.transits))
            now = server.now(conn)
            conn.commit()
            self.pipeline.last_received = seen
            changes: list[LifecycleEvent] = []
            events = self.pipeline.tick(now, changes)
            if not events and not changes:
                return
            if not self.membership.holds_watchdog(conn):  # in the writing transaction
                conn.rollback()
                self.pipeline.reset_state()
                return
            _, alert_ids = store.write_batch(conn, [], [], [], events)
            store.apply_lifecycle(conn, changes)
            alerts = [alert_rows.as_published(conn, i) for i in alert_ids]
            conn.commit()
        except psycopg.OperationalError:
            self._lost()
            self.pipeline.reset_state()  # those alerts were not written: find them again
            return
        self._publish(alerts)

    def _retention_due(self) -> bool:
        last = self._last_retention
        return last is None or time.monotonic() - last >= retention.EVERY_S

    def retention(self) -> None:
        """Drop telemetry past the retention (when the lease is taken, then hourly),
        on a connection of its own: a failure (a chunk locked elsewhere) stays away
        from the batches."""
        self._last_retention = time.monotonic()
        days = self.settings.retention_days
        if days is None:
            return
        try:
            with self.membership.connect() as conn:
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
