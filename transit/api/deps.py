"""Request-scoped dependencies and the small helpers every router shares."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request
from psycopg.rows import dict_row

from transit import bootstrap
from transit.ingest.pipeline import Pipeline


def connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A connection from the pool; the request owns its transaction."""
    with request.app.state.pool.connection() as conn:
        conn.row_factory = dict_row
        yield conn


Db = Annotated[psycopg.Connection[Any], Depends(connection)]


def rules(request: Request) -> Pipeline:
    """A rule pipeline wired by the composition root with the app's settings (its
    filter bounds), for a route that runs telemetry through ingest (a replay)."""
    return bootstrap.pipeline(request.app.state.settings)


Rules = Annotated[Pipeline, Depends(rules)]


def iso(v: Any) -> Any:
    """A value as JSON shows it (datetimes in ISO 8601)."""
    return v.isoformat() if isinstance(v, datetime) else v


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON shows it."""
    return {k: iso(v) for k, v in row.items()}


def field_error(field: str, msg: str) -> HTTPException:
    """A 422 in FastAPI's own shape, naming the body field and the problem."""
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": msg, "type": "value_error"}])
