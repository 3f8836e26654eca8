"""How a repository runs a statement: rows come back as dicts (or as one value),
whatever row factory the caller's connection has (the API's connections give dicts,
the command line's and ingest's tuples)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]
Params = Sequence[Any] | Mapping[str, Any] | None


def rows(conn: Conn, sql: str, params: Params = None) -> list[dict[str, Any]]:
    """Every row the statement returns, as dicts in column order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def row(conn: Conn, sql: str, params: Params = None) -> dict[str, Any] | None:
    """The statement's first row as a dict, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def value(conn: Conn, sql: str, params: Params = None) -> Any:
    """The first column of the statement's first row, or None when it returns none."""
    found = row(conn, sql, params)
    return next(iter(found.values())) if found else None


def run(conn: Conn, sql: str, params: Params = None) -> int:
    """Run a statement that returns no rows; how many rows it changed."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount
