"""Request-scoped dependencies and the small helpers every router shares."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request
from psycopg.rows import dict_row


def connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A connection from the pool; the request owns its transaction."""
    with request.app.state.pool.connection() as conn:
        conn.row_factory = dict_row
        yield conn


Db = Annotated[psycopg.Connection[Any], Depends(connection)]


def iso(v: Any) -> Any:
    """A value as JSON shows it (datetimes in ISO 8601)."""
    return v.isoformat() if isinstance(v, datetime) else v


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON shows it."""
    return {k: iso(v) for k, v in row.items()}


def field_error(field: str, msg: str) -> HTTPException:
    """A 422 in FastAPI's own shape, naming the body field and the problem."""
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": msg, "type": "value_error"}])
