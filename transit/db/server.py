"""The database server itself: whether it answers, its clock, its version and
TimescaleDB, and the tables' sizes and row counts (``transit doctor`` reads them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from transit.db.query import Conn, rows, value


def ping(conn: Conn) -> None:
    """Ask the server a trivial question (raises when it does not answer)."""
    value(conn, "SELECT 1")


def now(conn: Conn) -> datetime:
    """The database's clock (the start of the current transaction)."""
    at = value(conn, "SELECT now()")
    assert isinstance(at, datetime)
    return at


def version(conn: Conn) -> str:
    """PostgreSQL's version."""
    return str(value(conn, "SHOW server_version"))


def timescale_version(conn: Conn) -> str | None:
    """The TimescaleDB extension's version, or None when it is not installed."""
    found = value(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    return str(found) if found is not None else None


def hypertables(conn: Conn) -> list[str]:
    """Every hypertable, by name."""
    return [
        r["hypertable_name"]
        for r in rows(
            conn, "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
        )
    ]


def tables(conn: Conn) -> list[str]:
    """The tables of the ``public`` schema, by name, without an extension's own
    (PostGIS's ``spatial_ref_sys``)."""
    return [
        r["relname"]
        for r in rows(
            conn,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
            "   AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1",
        )
    ]


def table_bytes(conn: Conn, table: str, hypertable: bool) -> int:
    """A table's size on disk (a hypertable's with its chunks)."""
    size = "hypertable_size" if hypertable else "pg_total_relation_size"
    return int(value(conn, f"SELECT {size}(%s::regclass)", (table,)) or 0)


def time_column(conn: Conn, hypertable: str) -> str | None:
    """A hypertable's time column (its first dimension)."""
    found = value(
        conn,
        "SELECT column_name FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = 'public' AND hypertable_name = %s"
        " ORDER BY dimension_number LIMIT 1",
        (hypertable,),
    )
    return str(found) if found is not None else None


def rows_between(
    conn: Conn, table: str, column: str, lo: datetime | None = None, hi: datetime | None = None
) -> int:
    """Rows of a table whose time ``column`` lies in [lo, hi); without bounds, in the
    last 24 hours up to now."""
    if lo is None or hi is None:
        return int(
            value(
                conn,
                f"SELECT count(*) FROM {table}"
                f" WHERE {column} > now() - interval '24 hours' AND {column} <= now()",
            )
        )
    return int(
        value(
            conn,
            f"SELECT count(*) FROM {table} WHERE {column} >= %s AND {column} < %s",
            (lo, hi),
        )
    )


def chunk_sizes(conn: Conn, hypertable: str) -> list[tuple[Any, ...]]:
    """A hypertable's chunks as (range start, range end, bytes), oldest first."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            "SELECT c.range_start, c.range_end, s.total_bytes"
            " FROM timescaledb_information.chunks c JOIN chunks_detailed_size(%s::regclass) s"
            " ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name"
            " WHERE c.hypertable_schema = 'public' AND c.hypertable_name = %s"
            " ORDER BY c.range_start",
            (hypertable, hypertable),
        ).fetchall()
