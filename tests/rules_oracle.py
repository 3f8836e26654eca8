"""The route-deviation rule as its definition reads, one fix at a time: the test
oracle for :mod:`transit.rules.deviation`, which runs it over whole batches. Test
code only; ingest never runs this.

The movement rules have one implementation, :func:`transit.rules.movement.observe_fix`:
fed every fix, it is their oracle (the batch sends it only the fixes that matter).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from transit.model import AlertEvent
from transit.rules.deviation import DeviationState, deviation_alert
from transit.rules.movement import Thresholds, TransitContext


def deviation_fix(
    th: Thresholds,
    state: DeviationState,
    ctx: TransitContext,
    *,
    time: datetime,
    inside: bool,
    lat: float,
    lon: float,
    distance_m: Callable[[], float],
) -> AlertEvent | None:
    """Feed one fix; the alert it opens or clears, if any (``distance_m`` is asked only
    then).

    A fix not newer than the newest seen is ignored. Outside for ``route_debounce_s``
    in a row opens the alert; back inside for ``route_clear_s`` in a row clears it."""
    if state.last_time is not None and time <= state.last_time:
        return None
    state.last_time = time
    if inside:
        state.outside_since = None
        if state.inside_since is None:
            state.inside_since = time
        if state.alert_open and (time - state.inside_since).total_seconds() >= th.route_clear_s:
            state.alert_open = False
            return deviation_alert(ctx, "clear", time, lat, lon, distance_m())
        return None
    state.inside_since = None
    if state.outside_since is None:
        state.outside_since = time
    outside_s = (time - state.outside_since).total_seconds()
    if not state.alert_open and outside_s >= th.route_debounce_s:
        state.alert_open = True
        return deviation_alert(ctx, "open", time, lat, lon, distance_m(), outside_s)
    return None
