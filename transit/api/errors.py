"""A service's refusals as HTTP answers: one mapping for every route."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from fastapi import HTTPException

from transit.services.errors import Forbidden, Invalid, NotFound, Refused


def _answer(exc: Exception) -> tuple[int, Any]:
    """The status and ``detail`` a refusal stands for."""
    if isinstance(exc, NotFound):
        return 404, str(exc)
    if isinstance(exc, Forbidden):
        return 403, str(exc)
    if isinstance(exc, Invalid):
        return 422, exc.problems  # each names its field, as FastAPI's own 422 does
    assert isinstance(exc, Refused)
    return 409, {"refused": exc.reasons}


@contextmanager
def answering(db: psycopg.Connection[Any]) -> Iterator[None]:
    """Run service calls; a refusal rolls the request's transaction back and becomes
    its answer: 404 (not found), 403 (forbidden), 422 (invalid) or 409 (refused, with
    every reason)."""
    try:
        yield
    except (NotFound, Forbidden, Invalid, Refused) as exc:
        db.rollback()
        raise HTTPException(*_answer(exc)) from None
