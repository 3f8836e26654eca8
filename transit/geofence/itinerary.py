"""Whether a declared itinerary hangs together: the corridor reaches every declared
office, every office lies in a declared country, and every country the corridor
crosses is declared.

An office is a circle and a corridor its route buffered by half its width, so the
corridor reaches an office when the two overlap: the office's centre lies within half
the corridor's width plus the office's radius of the route. Distances are in true
metres, in an azimuthal equidistant projection centred on the route, as
:meth:`Corridor.distance_m` measures them (over 1,300 km the scale is off by under
0.2 %: a few metres at the distances that decide here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString

from transit.geofence.corridor import DISTANCE_DENSIFY_DEG, Office, local_projection, reproject


@dataclass(frozen=True)
class DeclaredOffice:
    """An office as a declaration names it: the field, its index in a list field, the office."""

    field: str
    index: int | None
    office: Office


@dataclass(frozen=True)
class Problem:
    """What is wrong, and the declaration's field (and list index) it is about."""

    field: str
    index: int | None
    msg: str


def office_gaps_m(route: LineString, width_m: float, offices: Sequence[Office]) -> list[float]:
    """How far each office's zone lies outside the corridor, in metres (0 when they overlap)."""
    if not offices:
        return []
    c = route.centroid
    fwd, _ = local_projection(c.x, c.y)
    route_m = reproject(shapely.segmentize(route, DISTANCE_DENSIFY_DEG), fwd)
    x, y = fwd.transform(
        np.array([o.lon for o in offices], dtype=np.float64),
        np.array([o.lat for o in offices], dtype=np.float64),
    )
    dist = shapely.distance(route_m, shapely.points(np.asarray(x), np.asarray(y)))
    return [
        max(0.0, float(d) - width_m / 2 - o.radius_m) for d, o in zip(dist, offices, strict=True)
    ]


def check_itinerary(
    corridor_id: str,
    route: LineString,
    width_m: float,
    corridor_countries: Sequence[str],
    offices: Sequence[DeclaredOffice],
    countries: Sequence[str],
) -> list[Problem]:
    """Every problem of a declared itinerary, office by office, in the declaration's order."""
    problems: list[Problem] = []
    declared = set(countries)
    listed = ", ".join(countries)
    for d in offices:
        o = d.office
        outside = sorted({o.country, o.ref[:2]} - declared)
        if outside:
            problems.append(
                Problem(
                    d.field,
                    d.index,
                    f"{o.ref} is an office of {'/'.join(outside)}, which is not among the"
                    f" declared countries ({listed})",
                )
            )
    gaps = office_gaps_m(route, width_m, [d.office for d in offices])
    for d, gap in zip(offices, gaps, strict=True):
        if gap > 0:
            problems.append(
                Problem(
                    d.field,
                    d.index,
                    f"{d.office.ref} lies {gap / 1000:.1f} km outside corridor {corridor_id}"
                    f" (its {d.office.radius_m:.0f} m zone does not reach the corridor's"
                    f" {width_m:.0f} m width)",
                )
            )
    missing = [c for c in corridor_countries if c not in declared]
    if missing:
        problems.append(
            Problem(
                "countries",
                None,
                f"corridor {corridor_id} crosses {', '.join(missing)}, which the declaration"
                f" does not list ({listed})",
            )
        )
    return problems
