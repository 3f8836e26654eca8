"""Reference data and transits: offices, corridors, devices, and transit declarations."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from psycopg.rows import tuple_row

from transit.db.store import Conn
from transit.geofence.corridor import Corridor, Office
from transit.model import is_valid_mrn


def upsert_office(conn: Conn, office: Office) -> None:
    """Create or update an office."""
    conn.execute(
        "INSERT INTO offices (ref, name, country, roles, lon, lat, radius_m)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (ref) DO UPDATE SET"
        " name = EXCLUDED.name, country = EXCLUDED.country, roles = EXCLUDED.roles,"
        " lon = EXCLUDED.lon, lat = EXCLUDED.lat, radius_m = EXCLUDED.radius_m",
        (
            office.ref,
            office.name,
            office.country,
            list(office.roles),
            office.lon,
            office.lat,
            office.radius_m,
        ),
    )


def upsert_corridor(conn: Conn, corridor: Corridor) -> None:
    """Create or update a corridor (its route as GeoJSON)."""
    feat = corridor.to_feature()
    conn.execute(
        "INSERT INTO corridors (id, name, width_m, route, countries, properties)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
        " name = EXCLUDED.name, width_m = EXCLUDED.width_m, route = EXCLUDED.route,"
        " countries = EXCLUDED.countries, properties = EXCLUDED.properties",
        (
            corridor.id,
            corridor.name,
            corridor.width_m,
            json.dumps(feat["geometry"]),
            list(corridor.countries),
            json.dumps(corridor.properties),
        ),
    )


def register_device(
    conn: Conn, device_id: str, kind: str = "tracker", hmac_key: bytes | None = None
) -> None:
    """Register a device (idempotent); with a key, set or rotate its HMAC key."""
    conn.execute(
        "INSERT INTO devices (device_id, kind, hmac_key) VALUES (%s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET hmac_key = coalesce(EXCLUDED.hmac_key,"
        " devices.hmac_key)",
        (device_id, kind, hmac_key),
    )


def device_ids(conn: Conn) -> list[str]:
    """Every registered device id."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return [r[0] for r in cur.execute("SELECT device_id FROM devices ORDER BY 1").fetchall()]


def declare_transit(
    conn: Conn,
    *,
    mrn: str,
    tracker_id: str,
    corridor_id: str,
    office_departure: str,
    office_destination: str,
    countries: list[str],
    time_limit: datetime,
    seal_ids: list[str] | None = None,
    offices_transit: list[str] | None = None,
    vehicle: str | None = None,
    status: str = "declared",
    details: dict[str, Any] | None = None,
) -> None:
    """Record a transit declaration (replacing a previous one with the same MRN)."""
    if not is_valid_mrn(mrn):
        raise ValueError(f"MRN {mrn!r} is malformed or its check digit is wrong")
    conn.execute(
        "INSERT INTO transits (mrn, status, tracker_id, corridor_id, vehicle, seal_ids,"
        " office_departure, offices_transit, office_destination, countries, time_limit,"
        " released_at, details)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " CASE WHEN %s = 'declared' THEN NULL ELSE now() END, %s)"
        " ON CONFLICT (mrn) DO UPDATE SET status = EXCLUDED.status,"
        " tracker_id = EXCLUDED.tracker_id, corridor_id = EXCLUDED.corridor_id,"
        " seal_ids = EXCLUDED.seal_ids, time_limit = EXCLUDED.time_limit,"
        " released_at = EXCLUDED.released_at, arrived_at = NULL, closed_at = NULL,"
        " details = EXCLUDED.details",
        (
            mrn,
            status,
            tracker_id,
            corridor_id,
            vehicle,
            seal_ids or [],
            office_departure,
            offices_transit or [],
            office_destination,
            countries,
            time_limit,
            status,
            json.dumps(details or {}),
        ),
    )


def finish_other_transits(conn: Conn, tracker_id: str, keep_mrn: str) -> None:
    """A tracker follows one transit at a time: close the others it was on."""
    conn.execute(
        "UPDATE transits SET status = 'closed', closed_at = now()"
        " WHERE tracker_id = %s AND mrn <> %s AND status IN ('released', 'in_transit', 'overdue')",
        (tracker_id, keep_mrn),
    )
