"""A declaration checked against the reference data and the clock, as an office of
departure accepts one: the offices and the corridor exist, the itinerary hangs
together (:mod:`transit.geofence.itinerary`) and the time limit lies ahead, within
bounds. Every problem is reported at once (:class:`~transit.services.errors.Invalid`),
each naming its field (and the index in a list field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from shapely.geometry import LineString, shape

from transit.api.routes.transit_schemas import TransitIn, time_limit_problem
from transit.db import corridors, offices
from transit.geofence.itinerary import DeclaredOffice, check_itinerary
from transit.services.errors import Invalid, problem


def problems(db: psycopg.Connection[Any], body: TransitIn, now: datetime) -> list[dict[str, Any]]:
    """Every problem of the declaration against the reference data at ``now``."""
    errors: list[dict[str, Any]] = []
    limit = time_limit_problem(body.time_limit, now)
    if limit:
        errors.append(problem("time_limit", limit))
    named: list[tuple[str, int | None, str]] = [
        ("office_departure", None, body.office_departure),
        *[("offices_transit", i, r) for i, r in enumerate(body.offices_transit)],
        ("office_destination", None, body.office_destination),
    ]
    found = offices.by_refs(db, [ref for _, _, ref in named])
    declared: list[DeclaredOffice] = []
    for field, index, ref in named:
        office = found.get(ref)
        if office is None:
            errors.append(problem(field, f"no office {ref}", index))
        elif "parking" in office.roles:
            errors.append(problem(field, f"{ref} is a parking zone, not a customs office", index))
        else:
            declared.append(DeclaredOffice(field, index, office))
    corridor = corridors.route(db, body.corridor_id)
    if corridor is None:
        errors.append(problem("corridor_id", f"no corridor {body.corridor_id}"))
        return errors
    route = shape(corridor["route"])
    if not isinstance(route, LineString):  # the import refuses any other geometry
        raise TypeError(f"corridor {body.corridor_id}: route is a {route.geom_type}")
    errors += [
        problem(p.field, p.msg, p.index)
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
    """Raise :class:`Invalid` listing every problem of the declaration, if it has any."""
    errors = problems(db, body, now)
    if errors:
        raise Invalid(errors)
