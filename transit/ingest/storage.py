"""What ingest reads from the database around the pure pipeline, and how it writes what
the pipeline made: one place for the worker's batches and a replayed dead letter."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from transit.db import filtered, store
from transit.geofence import borders
from transit.geofence.corridor import Office, build_corridor
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
    corridor_rows = store.corridor_rows(conn)
    office_rows = store.office_rows(conn)
    signature = json.dumps([corridor_rows, office_rows], default=str, sort_keys=True)
    if signature != geo_signature:
        # Corridors or offices changed: cut and index them again (rare, and not per batch).
        corridors = [
            build_corridor(cid, name, route["coordinates"], width, countries, props)
            for cid, name, width, route, countries, props in corridor_rows
        ]
        offices = [Office(*row) for row in office_rows]
        pipeline.engine = GeofenceEngine(corridors, offices, country_borders)
    pipeline.devices = store.device_keys(conn)
    pipeline.set_transits(store.active_transits(conn), store.open_alert_keys(conn))
    pipeline.set_newest(filtered.newest_fix_times(conn))
    return signature


def write_result(conn: psycopg.Connection[Any], result: BatchResult) -> tuple[int, list[int]]:
    """Write what the pipeline made of a batch, in the caller's transaction: the one
    write path of ingest, for the worker's batches and a replayed dead letter alike.
    Returns (new fix rows, ids of new alerts)."""
    rows, alert_ids = store.write_batch(
        conn, result.fixes, result.seal_events, result.dead_letters, result.alerts
    )
    store.apply_lifecycle(conn, result.lifecycle)
    filtered.write_filtered(conn, result.filtered)
    return rows, alert_ids
