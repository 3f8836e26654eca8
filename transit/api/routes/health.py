"""Liveness: whether the API reaches its database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from transit.api.deps import Db

router = APIRouter()


@router.get("/health")
def health(db: Db) -> dict[str, Any]:
    """``{"status": "ok"}`` when the database answers."""
    db.execute("SELECT 1")
    return {"status": "ok"}
