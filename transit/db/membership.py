"""Ingest membership in PostgreSQL (tables ``ingest_slots`` and ``leases``).

A slot is an MQTT client id of a shared-subscription group. Its owner holds a
session-level advisory lock on it, on a connection of its own, for as long as it
lives: PostgreSQL frees the lock the moment that process dies, whatever kills it. A
reaper takes the same lock before it drains a dead owner's session, so one slot has
one user at a time. The watchdog lease is another such lock, one per database.
Ages are measured by the database's clock, the one clock all machines share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

SLOT_LOCK = 74210  # advisory lock class of slots: (SLOT_LOCK, hashtext(group/client_id))
LEASE_LOCK = 74211  # advisory lock class of leases: (LEASE_LOCK, hashtext(name))
GROUP_LOCK = 74212  # serialises leaving a group: (GROUP_LOCK, hashtext(group))
WATCHDOG = "watchdog"
LIVE = ("starting", "running", "leaving", "parked", "reaping")  # a session may remain

_HOLDER = (
    "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid = %s::oid AND l.objid = hashtext(%s)::oid AND l.objsubid = 2 LIMIT 1"
)


@dataclass(frozen=True)
class Orphan:
    """A slot whose worker is gone: its session may hold messages."""

    client_id: str
    state: str
    silent_s: float  # since its last heartbeat
    holder: int | None  # the backend still holding its lock (a frozen worker), if any


def _key(group: str, client_id: str) -> str:
    return f"{group}/{client_id}"


def _one(conn: Conn, sql: str, params: tuple[Any, ...]) -> Any:
    found = conn.execute(sql, params).fetchone()
    return found[0] if found else None


def try_lock_slot(conn: Conn, group: str, client_id: str) -> bool:
    """Take the slot's lock for this connection's life, if nobody holds it."""
    return bool(
        _one(
            conn,
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
            (SLOT_LOCK, _key(group, client_id)),
        )
    )


def slot_holder(conn: Conn, group: str, client_id: str) -> int | None:
    """The backend pid holding the slot's lock, or None when it is free."""
    found = _one(conn, _HOLDER, (SLOT_LOCK, _key(group, client_id)))
    return int(found) if found is not None else None


def describe(conn: Conn, group: str, client_id: str) -> str:
    """Who the slot's row says owns it, for a log line."""
    found = conn.execute(
        "SELECT state, host, pid, extract(epoch FROM now() - heartbeat_at)::float8, reaped_by"
        " FROM ingest_slots WHERE group_name = %s AND client_id = %s",
        (group, client_id),
    ).fetchone()
    if not found:
        return "no row"
    state, host, pid, silent, reaper = found
    if state == "reaping":
        return f"being drained by {reaper}, heard {silent:.0f} s ago"
    return f"{state}, pid {pid} on {host}, heard {silent:.0f} s ago"


def claim(conn: Conn, group: str, client_id: str, host: str, pid: int) -> None:
    """Record this connection's process as the slot's owner (it holds the lock)."""
    conn.execute(
        "INSERT INTO ingest_slots (group_name, client_id, state, host, pid, backend_pid,"
        " started_at, heartbeat_at) VALUES (%s, %s, 'starting', %s, %s, pg_backend_pid(),"
        " now(), now()) ON CONFLICT (group_name, client_id) DO UPDATE SET state = 'starting',"
        " host = EXCLUDED.host, pid = EXCLUDED.pid, backend_pid = EXCLUDED.backend_pid,"
        " started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at",
        (group, client_id, host, pid),
    )


def reown(conn: Conn, group: str, client_id: str) -> None:
    """This connection owns the slot again (its lock taken anew after the old lock
    connection broke)."""
    conn.execute(
        "UPDATE ingest_slots SET backend_pid = pg_backend_pid(), heartbeat_at = now()"
        " WHERE group_name = %s AND client_id = %s",
        (group, client_id),
    )


def heartbeat(conn: Conn, group: str, client_id: str, state: str | None = None) -> bool:
    """Say the slot's user (owner or reaper) lives, and set its state; False when the
    row names another connection (this one was fenced and the slot taken)."""
    return bool(
        _one(
            conn,
            "UPDATE ingest_slots SET heartbeat_at = now(), state = coalesce(%s, state)"
            " WHERE group_name = %s AND client_id = %s AND backend_pid = pg_backend_pid()"
            " RETURNING true",
            (state, group, client_id),
        )
    )


def orphans(
    conn: Conn, group: str, me: str, free_after_s: float, frozen_after_s: float
) -> list[Orphan]:
    """The group's slots, other than ``me``, that may hold a session and whose worker
    is gone: the lock free and the heart silent ``free_after_s``, or the heart silent
    ``frozen_after_s`` (a frozen or cut-off worker that still holds its lock)."""
    rows = conn.execute(
        "SELECT s.client_id, s.state, extract(epoch FROM now() - s.heartbeat_at)::float8,"
        " (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        "  AND l.database = d.oid AND l.classid = %s::oid AND l.objsubid = 2"
        "  AND l.objid = hashtext(s.group_name || '/' || s.client_id)::oid LIMIT 1)"
        " FROM ingest_slots s, (SELECT oid FROM pg_database"
        "  WHERE datname = current_database()) d"
        " WHERE s.group_name = %s AND s.client_id <> %s AND s.state = ANY(%s)"
        " ORDER BY s.heartbeat_at",
        (SLOT_LOCK, group, me, list(LIVE)),
    ).fetchall()
    found = []
    for client_id, state, silent, holder in rows:
        if (holder is None and silent >= free_after_s) or silent >= frozen_after_s:
            found.append(Orphan(client_id, state, float(silent), holder))
    return found


def fence(conn: Conn, backend_pid: int) -> int:
    """End every database session of the process holding a slot's lock in backend
    ``backend_pid`` (its sessions share one application name): its locks go, and so
    does a transaction it left open mid-batch, whose row locks would stall every other
    worker. A user of the same role may; the process learns it at its next heartbeat.
    Returns how many sessions were ended."""
    return int(
        _one(
            conn,
            "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a,"
            " (SELECT application_name AS name FROM pg_stat_activity WHERE pid = %s) h"
            " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
            " AND (a.pid = %s OR (h.name <> '' AND a.application_name = h.name))",
            (backend_pid, backend_pid),
        )
        or 0
    )


def begin_reap(conn: Conn, group: str, client_id: str, reaper: str, free_after_s: float) -> bool:
    """Having taken the slot's lock, mark it being drained by ``reaper`` (this
    connection becomes its user); False if it needs no draining after all."""
    return bool(
        _one(
            conn,
            "UPDATE ingest_slots SET state = 'reaping', reaped_by = %s, reaps = reaps + 1,"
            " backend_pid = pg_backend_pid(), heartbeat_at = now()"
            " WHERE group_name = %s AND client_id = %s AND state = ANY(%s)"
            " AND heartbeat_at <= now() - make_interval(secs => %s) RETURNING true",
            (reaper, group, client_id, list(LIVE), free_after_s),
        )
    )


def end_reap(conn: Conn, group: str, client_id: str, drained: int, gone: bool) -> None:
    """Record what the reaper took; ``gone``: the broker has no session for it any more."""
    conn.execute(
        "UPDATE ingest_slots SET state = CASE WHEN %s THEN 'reaped' ELSE state END,"
        " drained = %s, reaped_at = now(), heartbeat_at = now()"
        " WHERE group_name = %s AND client_id = %s AND backend_pid = pg_backend_pid()",
        (gone, drained, group, client_id),
    )


def finish(conn: Conn, group: str, client_id: str, state: str, drained: int) -> None:
    """Record how the owner ended (left, parked) and, for a slot that left, how many
    messages the check after its DISCONNECT still found (0: it ended an empty session)."""
    conn.execute(
        "UPDATE ingest_slots SET state = %s, drained = %s, heartbeat_at = now()"
        " WHERE group_name = %s AND client_id = %s AND backend_pid = pg_backend_pid()",
        (state, drained, group, client_id),
    )


def may_leave(conn: Conn, group: str, client_id: str, fresh_s: float) -> bool:
    """Whether this member may take its session out of the group: only while another
    member runs, so that the group keeps a subscriber and the broker drops nothing.
    If so, the slot is marked leaving (serialised per group: two last members do not
    both go)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (GROUP_LOCK, group))
        others = _one(
            conn,
            "SELECT count(*) FROM ingest_slots WHERE group_name = %s AND client_id <> %s"
            " AND state = 'running' AND heartbeat_at > now() - make_interval(secs => %s)",
            (group, client_id, fresh_s),
        )
        if not others:
            return False
        heartbeat(conn, group, client_id, "leaving")
        return True


def try_lease(conn: Conn, name: str) -> bool:
    """Take the database-wide lease ``name`` for this connection's life, if free."""
    return bool(_one(conn, "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LEASE_LOCK, name)))


def release_lease(conn: Conn, name: str) -> None:
    """Give the lease up before the connection ends (a graceful stop)."""
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LEASE_LOCK, name))


def holds_lease(conn: Conn, name: str, backend_pid: int) -> bool:
    """Whether the backend ``backend_pid`` holds the lease (checked from any connection)."""
    return bool(_one(conn, _HOLDER, (LEASE_LOCK, name)) == backend_pid)


def record_lease(conn: Conn, name: str, holder: str, group: str, host: str, pid: int) -> None:
    """Write who holds the lease now (counting a change of holder as a takeover)."""
    conn.execute(
        "INSERT INTO leases (name, holder, group_name, host, pid, acquired_at, renewed_at)"
        " VALUES (%s, %s, %s, %s, %s, now(), now()) ON CONFLICT (name) DO UPDATE SET"
        " holder = EXCLUDED.holder, group_name = EXCLUDED.group_name, host = EXCLUDED.host,"
        " pid = EXCLUDED.pid, acquired_at = now(), renewed_at = now(),"
        " takeovers = leases.takeovers + 1",
        (name, holder, group, host, pid),
    )


def renew_lease(conn: Conn, name: str, holder: str) -> None:
    """Say the holder still runs (the lock is the lease; this is for people)."""
    conn.execute(
        "UPDATE leases SET renewed_at = now() WHERE name = %s AND holder = %s", (name, holder)
    )


def lease_holder(conn: Conn, name: str) -> tuple[str, int] | None:
    """The recorded holder of the lease (client id and pid), if any."""
    found = conn.execute("SELECT holder, pid FROM leases WHERE name = %s", (name,)).fetchone()
    return (str(found[0]), int(found[1])) if found else None


def slots(conn: Conn, group: str) -> list[dict[str, Any]]:
    """The group's slots as rows (for diagnostics and tests)."""
    cur = conn.execute(
        "SELECT client_id, state, host, pid, extract(epoch FROM now() - heartbeat_at)::float8"
        " AS silent_s, reaped_by, reaped_at, drained, reaps FROM ingest_slots"
        " WHERE group_name = %s ORDER BY client_id",
        (group,),
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
