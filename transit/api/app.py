"""The FastAPI application: one connection pool, routers per feature."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from transit.api.routes import alerts, health, metrics, transits
from transit.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the pool opens at startup and closes at shutdown."""
    cfg = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(cfg.database_url, min_size=1, max_size=10, open=False)
        pool.open(wait=True, timeout=30)
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="transit",
        version="0.1.0",
        description="Electronic cargo tracking for customs transit.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(transits.router, prefix="/api/v1")
    app.include_router(alerts.router, prefix="/api/v1")
    return app
