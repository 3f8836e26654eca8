"""Request-scoped dependencies: a pooled connection per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg.rows import dict_row


def connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A connection from the pool; the request owns its transaction."""
    with request.app.state.pool.connection() as conn:
        conn.row_factory = dict_row
        yield conn


Db = Annotated[psycopg.Connection[Any], Depends(connection)]
