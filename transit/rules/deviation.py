"""Route deviation: a truck outside its corridor for longer than the debounce window.

Hysteresis: the alert opens after ``debounce_s`` of continuous fixes outside, and
clears (recorded, never erased) after ``clear_s`` of continuous fixes back inside.
Fixes older than the newest one seen are ignored by the rule, so late and duplicate
fixes can neither raise nor clear anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from transit.model import AlertEvent, AlertType, Severity


@dataclass
class DeviationState:
    """What the rule remembers of one transit."""

    last_time: datetime | None = None
    outside_since: datetime | None = None
    inside_since: datetime | None = None
    alert_open: bool = False


@dataclass(frozen=True)
class DeviationRule:
    """Thresholds of the route-deviation rule (seconds of event time)."""

    debounce_s: float = 60.0
    clear_s: float = 60.0

    def observe(
        self,
        state: DeviationState,
        *,
        mrn: str,
        device_id: str,
        time: datetime,
        inside: bool,
        lat: float,
        lon: float,
        distance_m: float | Callable[[], float],
    ) -> AlertEvent | None:
        """Feed one fix; returns the alert to open or clear, if any. ``distance_m`` may
        be a function: it is only called for a fix that opens or clears the alert."""
        if state.last_time is not None and time <= state.last_time:
            return None
        state.last_time = time
        if inside:
            state.outside_since = None
            if state.inside_since is None:
                state.inside_since = time
            if state.alert_open and (time - state.inside_since).total_seconds() >= self.clear_s:
                state.alert_open = False
                return self._event("clear", mrn, device_id, time, lat, lon, distance_m)
            return None
        state.inside_since = None
        if state.outside_since is None:
            state.outside_since = time
        outside_s = (time - state.outside_since).total_seconds()
        if not state.alert_open and outside_s >= self.debounce_s:
            state.alert_open = True
            return self._event("open", mrn, device_id, time, lat, lon, distance_m, outside_s)
        return None

    @staticmethod
    def _event(
        action: str,
        mrn: str,
        device_id: str,
        time: datetime,
        lat: float,
        lon: float,
        distance_m: float | Callable[[], float],
        outside_s: float | None = None,
    ) -> AlertEvent:
        metres = distance_m() if callable(distance_m) else distance_m
        details: dict[str, object] = {"distance_m": round(metres, 1)}
        if outside_s is not None:
            details["outside_s"] = outside_s
        return AlertEvent(
            mrn=mrn,
            device_id=device_id,
            type=AlertType.ROUTE_DEVIATION,
            severity=Severity.HIGH,
            action=action,
            time=time,
            lat=lat,
            lon=lon,
            details=details,
        )


def observe_stretch(
    rule: DeviationRule,
    state: DeviationState,
    *,
    mrn: str,
    device_id: str,
    times: list[datetime],
    inside: Sequence[bool],
    lats: Sequence[float],
    lons: Sequence[float],
    distance_m: Callable[[int], float],
) -> list[AlertEvent]:
    """Feed one transit's fixes (sorted by time) at once; ``distance_m(i)`` gives fix
    ``i``'s distance to the route when an alert needs it.

    A stretch wholly inside the corridor, with nothing pending, can neither open nor
    clear an alert: it costs one update, not one step per fix. That is the common case,
    so the rule's cost follows the anomalies, not the fleet."""
    if all(inside) and state.outside_since is None and not state.alert_open:
        if state.last_time is None or times[-1] > state.last_time:
            if state.inside_since is None:
                state.inside_since = times[0]
            state.last_time = times[-1]
        return []
    events = []
    for i, t in enumerate(times):
        ev = rule.observe(
            state,
            mrn=mrn,
            device_id=device_id,
            time=t,
            inside=bool(inside[i]),
            lat=float(lats[i]),
            lon=float(lons[i]),
            distance_m=lambda i=i: distance_m(i),  # type: ignore[misc]
        )
        if ev is not None:
            events.append(ev)
    return events
