"""An ingest worker's membership of its group, kept in PostgreSQL.

A thread of the worker, on a database connection of its own:

- owns the worker's slot (its MQTT client id): takes the slot's lock at start (waiting
  while another process has it: the same id twice would throw each other off the
  broker), beats the slot's heart every second;
- holds the watchdog lease when it is free: one process across every worker on every
  machine runs the wall-clock rules and the retention; when it dies its connection
  ends, the lock is free, and another member takes it within a heartbeat or two;
- reaps: a slot of the group whose lock is free and whose heart has been silent for
  :data:`FREE_AFTER_S` (or silent for :data:`FROZEN_AFTER_S` with its lock still held:
  a frozen process, whose database session is then ended) still has a session at the
  broker, which goes on receiving its share of the messages. The reaper takes that
  slot's lock (so one reaper per orphan), drains the session into the worker's own
  queue (the same batches, committed before acknowledged) and ends it.

A worker that finds its slot taken (it was fenced while frozen or cut off) stops at
once, without touching the session, and its supervisor starts it again.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from typing import Any

import psycopg

from transit.config import Settings
from transit.db import membership as repo
from transit.ingest import session

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
FREE_AFTER_S = 3.0  # lock free and no heartbeat for this long: the worker is gone
FROZEN_AFTER_S = 10.0  # no heartbeat for this long, lock held or not: gone too
FRESH_S = 5.0  # a member heard within this long counts as running when another leaves
REAP_EVERY_S = 1.0


def app_name(group: str, client_id: str) -> str:
    """The application name of every database session of a worker: fencing a frozen
    worker ends them all."""
    return f"transit-ingest {group}/{client_id}"[:63]


class Membership:
    """The slot, the heartbeat, the watchdog lease and the reaper of one worker."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        client_id: str,
        subscription: str,
        sink: queue.Queue[session.Item],
        stop: threading.Event,
        halt: threading.Event,
        reap: bool = True,
    ) -> None:
        self.settings = settings
        # Drain a dead member's MQTT session; a source that redelivers what a dead
        # consumer held (a queue) has none to drain.
        self.reap = reap
        self.group = group
        self.client_id = client_id
        self.subscription = subscription
        self.sink = sink
        self.stop = stop  # the worker leaves: no new reaping
        self.halt = halt  # the worker gives up: a drain under way ends too
        self.fenced = threading.Event()  # the slot was taken from us: stop at once
        self.watchdog = False  # this process holds the watchdog lease
        self.backend_pid = 0  # the lock connection's backend (its locks are ours)
        self.state = "starting"
        self.subscribed = threading.Event()  # set by the MQTT side on SUBACK
        self.reaps = 0  # sessions of dead members drained
        self._host = socket.gethostname()
        self._conn: psycopg.Connection[Any] | None = None
        self._use = threading.Lock()  # the connection: one thread at a time
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None
        self._last_reap_look = 0.0

    # -- the slot -----------------------------------------------------------------------
    def connect(self, autocommit: bool = False) -> psycopg.Connection[Any]:
        """A database session of this worker, named as its own."""
        return psycopg.connect(
            self.settings.database_url,
            autocommit=autocommit,
            connect_timeout=5,
            application_name=app_name(self.group, self.client_id),
        )

    def _connect(self) -> psycopg.Connection[Any]:
        conn = self.connect(autocommit=True)
        self.backend_pid = conn.info.backend_pid
        return conn

    def claim(self) -> bool:
        """Take the slot, waiting while another process holds it. False if stopped first."""
        last_said = 0.0
        while not self.stop.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                if repo.try_lock_slot(self._conn, self.group, self.client_id):
                    repo.claim(self._conn, self.group, self.client_id, self._host, os.getpid())
                    self._thread = threading.Thread(
                        target=self._run, name="membership", daemon=True
                    )
                    self._thread.start()
                    return True
                if time.monotonic() - last_said >= 10:
                    last_said = time.monotonic()
                    log.warning(
                        "slot %s of group %s is in use (%s); waiting for it",
                        self.client_id,
                        self.group,
                        repo.describe(self._conn, self.group, self.client_id),
                    )
            except psycopg.OperationalError as exc:
                log.warning("database unavailable for membership (%s); retrying", exc)
                self._conn = None
            self.stop.wait(HEARTBEAT_S)
        return False

    def _run(self) -> None:
        while not self._done.wait(HEARTBEAT_S):
            with self._use:
                if self._done.is_set():
                    return
                try:
                    self._beat()
                except psycopg.OperationalError as exc:
                    log.warning("membership connection lost (%s)", exc)
                    self._lost()

    def _beat(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            self._lost()
            return
        if self.state == "starting" and self.subscribed.is_set():
            self.state = "running"
        if not repo.heartbeat(conn, self.group, self.client_id, self.state):
            self._fence("the slot's row names another owner")
            return
        self._lease(conn)
        if self.reap and self.state == "running" and not self.stop.is_set():
            self._look_for_orphans(conn)

    def _lost(self) -> None:
        """The lock connection broke: our locks are gone. Take the slot again, or stop
        if someone (a reaper) has it now."""
        self.watchdog = False
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.close()
            self._conn = self._connect()
        except psycopg.OperationalError:
            self._conn = None  # the database is away; the next beat tries again
            return
        if not repo.try_lock_slot(self._conn, self.group, self.client_id):
            self._fence("another process holds the slot's lock")
            return
        repo.reown(self._conn, self.group, self.client_id)

    def _fence(self, why: str) -> None:
        log.error("slot %s lost (%s): this worker stops without touching it", self.client_id, why)
        self.watchdog = False
        self.fenced.set()
        self._done.set()

    # -- the watchdog lease ---------------------------------------------------------------
    def _lease(self, conn: psycopg.Connection[Any]) -> None:
        if self.state not in ("starting", "running"):
            return
        if self.watchdog:
            repo.renew_lease(conn, repo.WATCHDOG, self.client_id)
        elif repo.try_lease(conn, repo.WATCHDOG):
            repo.record_lease(
                conn, repo.WATCHDOG, self.client_id, self.group, self._host, os.getpid()
            )
            self.watchdog = True
            log.info("%s holds the watchdog lease", self.client_id)

    def holds_watchdog(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the lease is still ours, checked in the caller's transaction."""
        return self.watchdog and repo.holds_lease(conn, repo.WATCHDOG, self.backend_pid)

    # -- reaping --------------------------------------------------------------------------
    def _look_for_orphans(self, conn: psycopg.Connection[Any]) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return
        if time.monotonic() - self._last_reap_look < REAP_EVERY_S:
            return
        self._last_reap_look = time.monotonic()
        found = repo.orphans(conn, self.group, self.client_id, FREE_AFTER_S, FROZEN_AFTER_S)
        if found:
            self._reaper = threading.Thread(
                target=self._reap, args=(found[0],), name="reaper", daemon=True
            )
            self._reaper.start()

    def _reap(self, orphan: repo.Orphan) -> None:
        """Drain one dead member's session; its lock on a connection of this job's own."""
        try:
            with self.connect(autocommit=True) as conn:
                if orphan.holder is not None:
                    ended = repo.fence(conn, orphan.holder)
                    log.warning(
                        "slot %s silent for %.0f s with its lock held: fenced (%d sessions"
                        " of its process ended)",
                        orphan.client_id,
                        orphan.silent_s,
                        ended,
                    )
                    time.sleep(0.2)  # the ended backend lets its locks go
                if not repo.try_lock_slot(conn, self.group, orphan.client_id):
                    return  # another reaper has it, or its owner came back
                if not repo.begin_reap(
                    conn, self.group, orphan.client_id, self.client_id, FREE_AFTER_S
                ):
                    return
                t0 = time.monotonic()
                report = session.drain(
                    self.settings,
                    orphan.client_id,
                    self.subscription,
                    self.sink,
                    self.halt,
                    beat=lambda: repo.heartbeat(conn, self.group, orphan.client_id),
                )
                repo.end_reap(conn, self.group, orphan.client_id, report.messages, report.gone)
        except psycopg.OperationalError as exc:
            log.warning("reaping %s interrupted (%s); another try later", orphan.client_id, exc)
            return
        self.reaps += 1
        log.warning(
            "drained slot %s (%s, silent %.0f s): %d messages in %.1f s, %d rounds, session %s%s",
            orphan.client_id,
            orphan.state,
            orphan.silent_s,
            report.messages,
            time.monotonic() - t0,
            report.rounds,
            "gone" if report.gone else "still there",
            f" ({report.reason})" if report.reason else "",
        )

    # -- leaving --------------------------------------------------------------------------
    @property
    def reaping(self) -> bool:
        """A drain is under way (a leaving worker processes it to its end first)."""
        return self._reaper is not None and self._reaper.is_alive()

    def leave(self) -> bool:
        """Give up the watchdog lease (the drain under way has ended). True: this member
        may take its session out of the group; False: it is the last running member and
        keeps its session (parked), so that what is published meanwhile is not dropped."""
        with self._use:
            conn = self._conn
            if conn is None or conn.closed:
                return False
            try:
                if self.watchdog:
                    self.watchdog = False
                    repo.release_lease(conn, repo.WATCHDOG)
                may = repo.may_leave(conn, self.group, self.client_id, FRESH_S)
            except psycopg.OperationalError:
                return False
            self.state = "leaving" if may else "parked"
            return may

    def finish(self, state: str, found: int = 0) -> None:
        """Record how this member ended (left, parked; ``found``: what the check after
        its DISCONNECT still found) and let the slot go."""
        with self._use:
            self._done.set()
        if self._thread is not None:
            self._thread.join(5)
        conn = self._conn
        if conn is None or conn.closed or self.fenced.is_set():
            return
        try:
            repo.finish(conn, self.group, self.client_id, state, found)
            conn.close()  # frees the slot's lock (and a lease still held)
        except psycopg.OperationalError:
            pass
