"""Where a transit is on its journey, found in its tracker's fixes: the departure from
the office of departure, the border crossings, the arrival at the office of destination.

This only looks; :mod:`transit.lifecycle` decides. Each event is looked for and
recorded only where the lifecycle allows its action from the transit's state, and it
moves the transit on to the state the lifecycle gives. Pure, like the pipeline it
serves: the store applies the events it returns through the same state machine.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from transit.geofence.engine import Checked, GeofenceEngine
from transit.ingest.types import ActiveTransit
from transit.lifecycle import Action, LifecycleEvent, State, next_state
from transit.rules.movement import FixView


@dataclass(frozen=True)
class Stretch:
    """One transit's fixes ``[s, e)`` of a batch (in time order, as the engine checked
    them) and its newest fix before the batch."""

    checked: Checked
    lons: NDArray[np.float64]
    lats: NDArray[np.float64]
    times: list[datetime]
    s: int
    e: int
    last: FixView | None


def step(
    t: ActiveTransit,
    action: Action,
    time: datetime,
    details: dict[str, Any],
    out: list[LifecycleEvent],
) -> ActiveTransit:
    """Record ``action`` into ``out`` if the lifecycle allows it from the transit's state.
    Returns the transit in the state the lifecycle leads it to (itself if unchanged)."""
    target = next_state(State(t.status), action)
    if target is None:
        return t
    out.append(LifecycleEvent(t.mrn, action, time, details))
    return t if target == t.status else replace(t, status=target)


def allows(t: ActiveTransit, action: Action) -> bool:
    """Whether the lifecycle allows ``action`` from the transit's state."""
    return next_state(State(t.status), action) is not None


def progress(
    t: ActiveTransit, engine: GeofenceEngine, fixes: Stretch
) -> tuple[ActiveTransit, list[LifecycleEvent]]:
    """Departure, border crossings and arrival in one transit's fixes of a batch, in
    that order. Returns the transit as it then is, and what was found.

    Departure is the batch's newest fix outside the office of departure's zone. A
    crossing is a change of country between fixes in time order (late fixes are left
    out); it names the declared office of transit or exit in the country entered.
    Arrival is a stop inside the office of destination's zone."""
    out: list[LifecycleEvent] = []
    s, e, times = fixes.s, fixes.e, fixes.times
    if (
        allows(t, Action.DEPART)
        and engine.zone_at(float(fixes.lons[e - 1]), float(fixes.lats[e - 1])) != t.offices[0]
    ):
        t = step(t, Action.DEPART, times[e - 1], {"office": t.offices[0]}, out)
    if allows(t, Action.CROSS):
        for time, details in crossings(t, fixes):
            t = step(t, Action.CROSS, time, details, out)
    if allows(t, Action.ARRIVE):
        dest = t.offices[-1]
        zones = fixes.checked.zone_id[s:e]
        for i in np.flatnonzero(zones >= 0).tolist():
            if fixes.checked.zone_refs[int(zones[i])] == dest:
                t = step(t, Action.ARRIVE, times[s + i], {"office": dest}, out)
                break
    return t, out


def crossings(t: ActiveTransit, fixes: Stretch) -> list[tuple[datetime, dict[str, Any]]]:
    """The border crossings in a transit's fixes, each as (time, details): the changes
    of known country among the fixes newer than the last one seen (a batch is in time
    order), looked at only where they happen."""
    checked, lons, lats, times = fixes.checked, fixes.lons, fixes.lats, fixes.times
    s, e, last = fixes.s, fixes.e, fixes.last
    codes = checked.country_codes
    first = s if last is None else bisect.bisect_right(times, last.time, s, e)
    known = first + np.flatnonzero(checked.country_id[first:e] >= 0)
    ids = checked.country_id[known]
    before = np.r_[codes.index(last.country) if last and last.country in codes else -1, ids[:-1]]
    out: list[tuple[datetime, dict[str, Any]]] = []
    for j in np.flatnonzero((ids != before) & (before >= 0)).tolist():
        i, c = int(known[j]), codes[int(ids[j])]
        office = next((o for o in t.offices[1:] if o.startswith(c)), None)
        details = {
            "from": codes[int(before[j])],
            "to": c,
            "office": office,
            "lat": round(float(lats[i]), 6),
            "lon": round(float(lons[i]), 6),
        }
        out.append((times[i], details))
    return out
