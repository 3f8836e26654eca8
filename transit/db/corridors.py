"""Corridors (table ``corridors``): routes with a width, their countries and
properties (thresholds). :func:`build` is the one place a stored corridor becomes a
:class:`~transit.geofence.corridor.Corridor` (buffered in metres, cut by borders
later by the engine)."""

from __future__ import annotations

import json
from typing import Any

from transit.db.query import Conn, row, rows, run
from transit.geofence.corridor import Corridor, build_corridor

_COLUMNS = "id, name, width_m, route, countries, properties"
CorridorRow = tuple[str, str, float, dict[str, Any], list[str], dict[str, Any]]


def _as_tuple(r: dict[str, Any]) -> CorridorRow:
    return (
        r["id"],
        r["name"],
        float(r["width_m"]),
        r["route"],
        list(r["countries"]),
        r["properties"],
    )


def list_rows(conn: Conn) -> list[CorridorRow]:
    """Every corridor as stored: id, name, width, GeoJSON route, countries, properties."""
    return [_as_tuple(r) for r in rows(conn, f"SELECT {_COLUMNS} FROM corridors ORDER BY id")]


def build(stored: list[CorridorRow]) -> list[Corridor]:
    """Corridors from their stored rows."""
    return [
        build_corridor(cid, name, route["coordinates"], width, countries, props)
        for cid, name, width, route, countries, props in stored
    ]


def list_all(conn: Conn) -> list[Corridor]:
    """Every corridor, by id."""
    return build(list_rows(conn))


def get(conn: Conn, corridor_id: str) -> Corridor | None:
    """One corridor, or None."""
    found = row(conn, f"SELECT {_COLUMNS} FROM corridors WHERE id = %s", (corridor_id,))
    return build([_as_tuple(found)])[0] if found else None


def route(conn: Conn, corridor_id: str) -> dict[str, Any] | None:
    """A corridor's ``width_m``, GeoJSON ``route`` and ``countries`` without building
    it (a declaration is checked against them), or None."""
    return row(
        conn, "SELECT width_m, route, countries FROM corridors WHERE id = %s", (corridor_id,)
    )


def upsert(conn: Conn, corridor: Corridor) -> None:
    """Create or update a corridor (its route as GeoJSON)."""
    feat = corridor.to_feature()
    run(
        conn,
        f"INSERT INTO corridors ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, width_m = EXCLUDED.width_m,"
        " route = EXCLUDED.route, countries = EXCLUDED.countries,"
        " properties = EXCLUDED.properties",
        (
            corridor.id,
            corridor.name,
            corridor.width_m,
            json.dumps(feat["geometry"]),
            list(corridor.countries),
            json.dumps(corridor.properties),
        ),
    )
