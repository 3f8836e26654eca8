"""The FastAPI application: one connection pool, routers per feature."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from transit.api import live
from transit.api.routes import (
    admin,
    alerts,
    dead_letters,
    filtered_fixes,
    health,
    keys,
    messages,
    metrics,
    registry,
    transits,
    web,
)
from transit.config import Settings, get_settings
from transit.db.pool import open_pool


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the pool opens at startup and closes at shutdown."""
    cfg = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = open_pool(cfg.database_url)
        app.state.pool = pool
        app.state.settings = cfg
        app.state.log = logging.getLogger("transit.api")
        app.state.live = live.Broadcaster(pool)
        app.state.live.start()
        try:
            yield
        finally:
            await app.state.live.stop()
            pool.close()

    app = FastAPI(
        title="transit",
        version="0.1.0",
        description="Electronic cargo tracking for customs transit.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    for r in (admin, registry, transits, alerts, keys, dead_letters, filtered_fixes, messages):
        app.include_router(r.router, prefix="/api/v1")
    app.include_router(live.router)
    app.include_router(web.router)

    @app.exception_handler(psycopg.DataError)
    def _data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # Values the schema lets through but PostgreSQL cannot store (a NUL character in
        # text): the request is at fault, and says which rule it broke.
        return JSONResponse(
            status_code=422,
            content={
                "detail": [
                    {
                        "loc": ["body"],
                        "msg": f"a value cannot be stored: {exc}".strip(),
                        "type": "value_error",
                    }
                ]
            },
        )

    return app
