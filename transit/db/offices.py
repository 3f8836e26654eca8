"""Customs offices and parking zones (table ``offices``): circles with a reference,
a country and roles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transit.db.query import Conn, row, rows, run

if TYPE_CHECKING:
    from transit.geofence.corridor import Office

_COLUMNS = "ref, name, country, roles, lon, lat, radius_m"


def build(stored: list[dict[str, Any]]) -> list[Office]:
    """Offices from their stored rows."""
    # Imported here: the geofence (shapely, pyproj) loads only when an office is built,
    # not for a key checked against an office's existence.
    from transit.geofence.corridor import Office

    return [
        Office(
            r["ref"],
            r["name"],
            r["country"],
            tuple(r["roles"]),
            float(r["lon"]),
            float(r["lat"]),
            float(r["radius_m"]),
        )
        for r in stored
    ]


def list_rows(conn: Conn) -> list[dict[str, Any]]:
    """Every office as stored, by reference."""
    return rows(conn, f"SELECT {_COLUMNS} FROM offices ORDER BY ref")


def list_all(conn: Conn) -> list[Office]:
    """Every office, by reference."""
    return build(list_rows(conn))


def by_refs(conn: Conn, refs: list[str]) -> dict[str, Office]:
    """The offices with these references (those that exist), by reference."""
    found = rows(conn, f"SELECT {_COLUMNS} FROM offices WHERE ref = ANY(%s)", (refs,))
    return {o.ref: o for o in build(found)}


def exists(conn: Conn, ref: str) -> bool:
    """Whether an office has this reference."""
    return row(conn, "SELECT 1 FROM offices WHERE ref = %s", (ref,)) is not None


def get(conn: Conn, ref: str) -> Office | None:
    """One office, or None."""
    found = row(conn, f"SELECT {_COLUMNS} FROM offices WHERE ref = %s", (ref,))
    return build([found])[0] if found else None


def upsert(conn: Conn, office: Office) -> None:
    """Create or update an office."""
    run(
        conn,
        f"INSERT INTO offices ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (ref) DO UPDATE SET name = EXCLUDED.name, country = EXCLUDED.country,"
        " roles = EXCLUDED.roles, lon = EXCLUDED.lon, lat = EXCLUDED.lat,"
        " radius_m = EXCLUDED.radius_m",
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
