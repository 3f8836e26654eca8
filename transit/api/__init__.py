"""The HTTP API (FastAPI): transits, tracks and alerts under /api/v1."""
