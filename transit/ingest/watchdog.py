"""What runs on the clock in a worker's main loop. What the holder of the watchdog lease
runs, in one process across every worker on every machine
(:mod:`transit.ingest.membership` holds the lease): the wall-clock rules (silence,
overdue) every few seconds, and the telemetry retention hourly. What every worker
runs: the sweep of messages held beyond a gap in their device's seqs whose missing
message is known lost (:mod:`transit.ingest.sequencing`), every second.

Its input is the database, not the worker's memory: the transits under way, their
rule state, and when each device was last heard (``devices.last_seen``, written by
whichever worker took the device's message), so it finds silence in messages other
workers received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from transit import retention
from transit.config import Settings
from transit.db import server, store
from transit.ingest import transaction
from transit.ingest.meetings import Meetings
from transit.ingest.membership import Membership
from transit.ingest.pipeline import Pipeline

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
TICK_S = 5.0  # how often the wall-clock rules run
SWEEP_S = 1.0  # how often held messages are swept


class Watchdog:
    """The duties on the clock, run from the worker's main loop (:meth:`run_due`)."""

    def __init__(
        self,
        settings: Settings,
        membership: Membership,
        pipeline: Pipeline,
        db: Callable[[], Conn],
        refresh: Callable[[Conn], None],
        lost: Callable[[], None],
        raised: Callable[[int], None],
        count: Callable[[transaction.Written], None],
    ) -> None:
        self.settings = settings
        self.membership = membership
        self.pipeline = pipeline
        self._db = db  # the worker's connection
        self._refresh = refresh  # brings the pipeline's transits up to the database
        self._lost = lost  # the worker's connection broke
        self.meetings = Meetings(settings)  # the rendezvous rule, while holding the lease
        self._raised = raised  # counts the alerts raised (the live feed reads the table)
        self._count = count  # into the worker's counters
        self._last_tick = time.monotonic()
        self._last_sweep = time.monotonic()
        self._last_retention: float | None = None

    def run_due(self) -> None:
        """Run what is due: the sweep; the rest if this process holds the lease."""
        if time.monotonic() - self._last_sweep >= SWEEP_S:
            self.sweep()
        if time.monotonic() - self._last_tick >= TICK_S:
            self._last_tick = time.monotonic()
            if self.membership.watchdog:
                self.tick()
            else:
                self.meetings.forget()
        if self.membership.watchdog and self._retention_due():
            self.retention()

    def tick(self) -> None:
        """Silence and overdue over every transit under way; then trucks met."""
        try:
            conn = self._db()
            self._refresh(conn)
            now = server.now(conn)
            if not self.membership.holds_watchdog(conn):  # in the writing transaction
                conn.rollback()
                self.meetings.forget()
                return
            # On the transits' stored rule state, those no batch holds now.
            under_way = list(self.pipeline.transits.values())
            me = self.membership.client_id
            written = transaction.watchdog(conn, self.pipeline, now, me, under_way)
            met = self.meetings.run(conn, self.pipeline, now)
            _, met_ids = store.write_batch(conn, [], [], [], met) if met else (0, [])
            conn.commit()
        except psycopg.OperationalError:
            self._lost()  # nothing was written: the next tick finds it all again
            self.meetings.forget()
            return
        self._raised(len(written.alert_ids) + len(met_ids))

    def sweep(self) -> None:
        """Evaluate messages held beyond a gap whose message is known lost (a truck must
        not stall), for the transits no batch holds now."""
        self._last_sweep = time.monotonic()
        try:
            conn = self._db()
            now = server.now(conn)
            written = transaction.sweep(conn, self.pipeline, now, self.membership.client_id)
            conn.commit()
        except psycopg.OperationalError:
            self._lost()
            return
        self._count(written)
        self._raised(len(written.alert_ids))

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
