"""What telemetry retention reads and drops: the transits whose telemetry is
protected, the telemetry hypertables present, and their chunks by time range.
:mod:`transit.retention` decides what may go."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg.rows import tuple_row

from transit.db.query import Conn, run

LOCK_KEY = 0x7E7E11  # pg_advisory_xact_lock key: one retention run at a time


def lock(conn: Conn, timeout: str = "10s") -> None:
    """Take the retention lock (until the transaction ends); a lock on a chunk held
    elsewhere is then waited for at most ``timeout``."""
    run(conn, "SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    run(conn, f"SET LOCAL lock_timeout = '{timeout}'")


def protected(
    conn: Conn, older_than: datetime, finished: list[str], margin: timedelta
) -> list[tuple[Any, ...]]:
    """The transits whose telemetry (widened by ``margin``) starts before
    ``older_than`` and is protected: not ``finished``, or finished with an enquiry.
    Each as (mrn, status, start, end or None, whether it had an enquiry), by start."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            "SELECT t.mrn, t.status, t.declared_at - %(m)s,"
            " CASE WHEN t.status = ANY(%(done)s) THEN t.closed_at + %(m)s END,"
            " t.status = 'overdue' OR EXISTS (SELECT 1 FROM transit_events e"
            "  WHERE e.mrn = t.mrn AND e.kind = 'overdue')"
            " FROM transits t WHERE t.declared_at - %(m)s < %(cut)s"
            " AND (NOT t.status = ANY(%(done)s) OR t.closed_at IS NULL"
            "  OR EXISTS (SELECT 1 FROM transit_events e WHERE e.mrn = t.mrn"
            "             AND e.kind = 'overdue'))"
            " ORDER BY 3",
            {"m": margin, "done": finished, "cut": older_than},
        ).fetchall()


def hypertables(conn: Conn, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that are hypertables here, in the order given."""
    with conn.cursor(row_factory=tuple_row) as cur:
        present = {
            r[0]
            for r in cur.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema = 'public' AND hypertable_name = ANY(%s)",
                (list(names),),
            ).fetchall()
        }
    return [n for n in names if n in present]


def chunks(
    conn: Conn,
    table: str,
    end: datetime,
    start: datetime | None,
    fn: Literal["show_chunks", "drop_chunks"],
) -> list[str]:
    """The table's chunks lying wholly in [start, end) (``show_chunks``), or dropped
    (``drop_chunks``); their names."""
    assert fn in ("show_chunks", "drop_chunks")
    with conn.cursor(row_factory=tuple_row) as cur:
        found = cur.execute(
            f"SELECT {fn}(%s::regclass, older_than => %s::timestamptz,"
            " newer_than => %s::timestamptz)",
            (table, end, start),
        ).fetchall()
    return [str(r[0]) for r in found]
