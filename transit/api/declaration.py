"""A declaration checked against the reference data and the clock, as an office of
departure accepts one: the offices and the corridor exist, the itinerary hangs
together (:mod:`transit.geofence.itinerary`) and the time limit lies ahead, within
bounds. Every problem is reported at once, in FastAPI's 422 shape, each naming its
field (and the index in a list field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from fastapi import HTTPException
from shapely.geometry import LineString, shape

from transit.api.routes.transit_schemas import TransitIn, time_limit_problem
from transit.geofence.corridor import Office
from transit.geofence.itinerary import DeclaredOffice, check_itinerary


def _error(field: str, index: int | None, msg: str) -> dict[str, Any]:
    loc: list[str | int] = ["body", field] if index is None else ["body", field, index]
    return {"loc": loc, "msg": msg, "type": "value_error"}


def _office(row: dict[str, Any]) -> Office:
    return Office(
        row["ref"],
        row["name"],
        row["country"],
        tuple(row["roles"]),
        row["lon"],
        row["lat"],
        row["radius_m"],
    )


def problems(db: psycopg.Connection[Any], body: TransitIn, now: datetime) -> list[dict[str, Any]]:
    """Every problem of the declaration against the reference data at ``now``."""
    errors: list[dict[str, Any]] = []
    limit = time_limit_problem(body.time_limit, now)
    if limit:
        errors.append(_error("time_limit", None, limit))
    named: list[tuple[str, int | None, str]] = [
        ("office_departure", None, body.office_departure),
        *[("offices_transit", i, r) for i, r in enumerate(body.offices_transit)],
        ("office_destination", None, body.office_destination),
    ]
    rows = db.execute(
        "SELECT ref, name, country, roles, lon, lat, radius_m FROM offices WHERE ref = ANY(%s)",
        ([ref for _, _, ref in named],),
    ).fetchall()
    found = {r["ref"]: _office(r) for r in rows}
    declared: list[DeclaredOffice] = []
    for field, index, ref in named:
        office = found.get(ref)
        if office is None:
            errors.append(_error(field, index, f"no office {ref}"))
        elif "parking" in office.roles:
            errors.append(_error(field, index, f"{ref} is a parking zone, not a customs office"))
        else:
            declared.append(DeclaredOffice(field, index, office))
    corridor = db.execute(
        "SELECT width_m, route, countries FROM corridors WHERE id = %s", (body.corridor_id,)
    ).fetchone()
    if corridor is None:
        errors.append(_error("corridor_id", None, f"no corridor {body.corridor_id}"))
        return errors
    route = shape(corridor["route"])
    if not isinstance(route, LineString):  # the import refuses any other geometry
        raise TypeError(f"corridor {body.corridor_id}: route is a {route.geom_type}")
    errors += [
        _error(p.field, p.index, p.msg)
        for p in check_itinerary(
            body.corridor_id,
            route,
            corridor["width_m"],
            corridor["countries"],
            declared,
            body.countries,
        )
    ]
    return errors


def check(db: psycopg.Connection[Any], body: TransitIn, now: datetime) -> None:
    """Raise a 422 listing every problem of the declaration, if it has any."""
    errors = problems(db, body, now)
    if errors:
        raise HTTPException(422, detail=errors)
