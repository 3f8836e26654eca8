"""What ingest reads from the database around the pure pipeline, and how it writes what
the pipeline made: one place for the worker's batches and a replayed dead letter."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from transit.db import alerts, corridors, devices, filtered, offices, store, transits
from transit.geofence import borders
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import BatchResult, Pipeline


def load_pipeline(
    conn: psycopg.Connection[Any],
    pipeline: Pipeline,
    country_borders: borders.Borders | None,
    geo_signature: str = "",
) -> str:
    """Bring ``pipeline`` up to the database: corridors and offices (cut and indexed
    again only when they differ from ``geo_signature``), registered devices, transits
    under way and their open alerts, each device's newest stored fix. Returns the
    corridors' and offices' signature."""
    corridor_rows = corridors.list_rows(conn)
    office_rows = offices.list_rows(conn)
    signature = json.dumps([corridor_rows, office_rows], default=str, sort_keys=True)
    if signature != geo_signature:
        # Corridors or offices changed: cut and index them again (rare, and not per batch).
        pipeline.engine = GeofenceEngine(
            corridors.build(corridor_rows), offices.build(office_rows), country_borders
        )
    pipeline.devices = devices.hmac_keys(conn)
    pipeline.set_transits(transits.under_way(conn), alerts.open_keys(conn))
    pipeline.set_newest(filtered.newest_fix_times(conn))
    return signature


def write_result(conn: psycopg.Connection[Any], result: BatchResult) -> tuple[int, list[int]]:
    """Write what the pipeline made of a batch, in the caller's transaction: the one
    write path of ingest, for the worker's batches and a replayed dead letter alike.
    Returns (new fix rows, ids of new alerts)."""
    rows, alert_ids = store.write_batch(
        conn, result.fixes, result.seal_events, result.dead_letters, result.alerts, result.messages
    )
    store.apply_lifecycle(conn, result.lifecycle)
    filtered.write_filtered(conn, result.filtered)
    return rows, alert_ids
