"""Liveness: whether the API reaches its database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from transit.api.deps import Db
from transit.db import server

router = APIRouter()


@router.get("/health")
def health(db: Db) -> dict[str, Any]:
    """``{"status": "ok"}`` when the database answers."""
    server.ping(db)
    return {"status": "ok"}
