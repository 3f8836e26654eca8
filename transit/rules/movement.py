"""Rules over a transit's stream of fixes, in event time: unauthorised stops, GPS jumps,
gaps in the signal, undeclared countries and offices, low battery.

Pure: the geofence engine has already said, for each fix, its country and (for a slow
fix) the office zone it is in; the rules only remember what they must. Fixes older than
the newest seen are ignored, so late and duplicate fixes raise nothing. Each condition
opens one alert (its ``key`` tells conditions of one type apart) and, where it can
clear, says so once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from transit.model import AlertEvent, AlertType, Severity

EARTH_R = 6_371_008.8


@dataclass(frozen=True)
class Thresholds:
    """Every rule's thresholds, in one place: defaults after the EAEU navigation-seal
    rules and RECTS practice; a corridor or a transit may set its own (ingest's
    ``rules_config``). The geofence engine and the live map take what a stop is from
    here too."""

    stop_speed_kmh: float = 5.0  # at or under: stopped
    stop_limit_s: float = 15 * 60  # longer outside a permitted zone: unauthorised stop
    max_speed_kmh: float = 250.0  # a truck cannot go faster: the fix jumped
    jump_min_m: float = 1_000.0  # and a jump is at least this far (multipath is ~100 m)
    reporting_period_s: float = 60.0
    signal_lost_periods: float = 2.0  # no fix for this many periods: signal lost
    low_battery_pct: float = 15.0
    route_debounce_s: float = 60.0  # outside the corridor this long: route deviation
    route_clear_s: float = 60.0  # back inside this long: the deviation clears

    @property
    def signal_lost_s(self) -> float:
        """Seconds without a fix that make a signal loss."""
        return self.reporting_period_s * self.signal_lost_periods


class FixView(NamedTuple):
    """What the rules need of one fix, after the geofence engine (a tuple: made by
    the thousand per batch, it must be cheap)."""

    time: datetime
    lat: float
    lon: float
    speed_kmh: float | None
    country: str | None
    zone: str | None  # office reference when a slow fix is inside an office's zone


@dataclass
class MovementState:
    """What the rules remember of one transit."""

    last: FixView | None = None
    stopped_since: datetime | None = None
    stop_alerted: bool = False
    open_keys: set[tuple[str, str]] = field(default_factory=set)


def _distance_m(a: FixView, b: FixView) -> float:
    la1, la2 = math.radians(a.lat), math.radians(b.lat)
    dla, dlo = la2 - la1, math.radians(b.lon - a.lon)
    h = math.sin(dla / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(dlo / 2) ** 2
    return 2 * EARTH_R * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class TransitContext:
    """The declaration the rules compare against."""

    mrn: str
    device_id: str
    countries: frozenset[str]
    offices: frozenset[str]  # departure, transit and destination
    parkings: frozenset[str] = frozenset()  # parking zones where a stop is permitted

    def alert(
        self,
        kind: AlertType,
        severity: Severity,
        action: str,
        time: datetime,
        *,
        key: str = "",
        details: dict[str, object] | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> AlertEvent:
        """An alert of this transit opened, cleared or given evidence at ``time``."""
        return AlertEvent(
            mrn=self.mrn,
            device_id=self.device_id,
            type=kind,
            severity=severity,
            action=action,
            time=time,
            lat=lat,
            lon=lon,
            key=key,
            details=details or {},
        )


def _condition(state: MovementState, kind: AlertType, key: str, action: str) -> str | None:
    """Open or clear one condition, once: the action to record, or None. An open
    condition does not open again (a GPS jump already open takes the later fix as
    evidence), a closed one does not clear."""
    held = (kind.value, key) in state.open_keys
    if action == "open":
        if held:
            if kind is not AlertType.GPS_JUMP:
                return None
            action = "evidence"  # a further jumped fix: attached to the open alert
        state.open_keys.add((kind.value, key))
    else:
        if not held:
            return None
        state.open_keys.discard((kind.value, key))
    return action


def jump_of(th: Thresholds, last: FixView, fix: FixView) -> tuple[float, float] | None:
    """``(metres, implied km/h)`` when ``fix`` jumped away from ``last`` (the last good
    fix, older): at least ``jump_min_m`` away, faster than ``max_speed_kmh``. None if not."""
    gap = (fix.time - last.time).total_seconds()
    metres = _distance_m(last, fix)
    if metres >= th.jump_min_m and metres / gap * 3.6 > th.max_speed_kmh:
        return metres, metres / gap * 3.6
    return None


def jump_alert(
    state: MovementState,
    ctx: TransitContext,
    last: FixView,
    fix: FixView,
    metres: float,
    kmh: float,
) -> AlertEvent | None:
    """The GPS jump alert for a jumped fix: one alert per jump away from the last good
    fix; fixes that stay jumped are its evidence."""
    key = last.time.isoformat()
    action = _condition(state, AlertType.GPS_JUMP, key, "open")
    if action is None:
        return None
    details: dict[str, object] = {"jump_m": round(metres), "implied_kmh": round(kmh)}
    return ctx.alert(
        AlertType.GPS_JUMP,
        Severity.HIGH,
        action,
        fix.time,
        key=key,
        details=details,
        lat=fix.lat,
        lon=fix.lon,
    )


def observe_fix(
    th: Thresholds, state: MovementState, ctx: TransitContext, fix: FixView
) -> list[AlertEvent]:
    """Feed one fix; returns the alerts it opens or clears."""
    last = state.last
    if last is not None and fix.time <= last.time:
        return []
    out: list[AlertEvent] = []

    def event(
        kind: AlertType, sev: Severity, action: str, key: str = "", **details: object
    ) -> None:
        act = _condition(state, kind, key, action)
        if act is not None:
            out.append(
                ctx.alert(
                    kind, sev, act, fix.time, key=key, details=details, lat=fix.lat, lon=fix.lon
                )
            )

    if last is not None:
        gap = (fix.time - last.time).total_seconds()
        jump = jump_of(th, last, fix)
        if jump is not None:
            ev = jump_alert(state, ctx, last, fix, *jump)
            return [ev] if ev is not None else []  # says nothing reliable of stops or places
        if gap >= th.signal_lost_s:
            # Found in event time: a hole in the track, already over when we see it.
            key = last.time.isoformat()
            event(
                AlertType.SIGNAL_LOST,
                Severity.HIGH,
                "open",
                key,
                gap_s=gap,
                since=last.time.isoformat(),
            )
            event(AlertType.SIGNAL_LOST, Severity.HIGH, "clear", key, gap_s=gap)
    state.last = fix

    if fix.country is not None and fix.country not in ctx.countries:
        event(
            AlertType.UNEXPECTED_COUNTRY,
            Severity.HIGH,
            "open",
            fix.country,
            country=fix.country,
            declared=sorted(ctx.countries),
        )
    if fix.zone is not None and fix.zone not in ctx.offices and fix.zone not in ctx.parkings:
        event(
            AlertType.WRONG_OFFICE,
            Severity.MEDIUM,
            "open",
            fix.zone,
            office=fix.zone,
            declared=sorted(ctx.offices),
        )

    stopped = fix.speed_kmh is not None and fix.speed_kmh <= th.stop_speed_kmh
    permitted = fix.zone is not None and (fix.zone in ctx.offices or fix.zone in ctx.parkings)
    if stopped and not permitted:
        if state.stopped_since is None:
            state.stopped_since = fix.time
        stopped_s = (fix.time - state.stopped_since).total_seconds()
        if stopped_s >= th.stop_limit_s:
            key = state.stopped_since.isoformat()
            event(AlertType.UNAUTHORIZED_STOP, Severity.HIGH, "open", key, stopped_s=stopped_s)
    else:
        if state.stopped_since is not None:
            key = state.stopped_since.isoformat()
            event(AlertType.UNAUTHORIZED_STOP, Severity.HIGH, "clear", key)
        state.stopped_since = None
    return out


def observe_battery(
    th: Thresholds,
    state: MovementState,
    ctx: TransitContext,
    time: datetime,
    device: str,
    battery_pct: float,
) -> list[AlertEvent]:
    """A tracker's or seal's battery report: low under the threshold, cleared when
    charged again (hysteresis of 5 points)."""
    if battery_pct < th.low_battery_pct:
        action = "open"
    elif battery_pct >= th.low_battery_pct + 5:
        action = "clear"
    else:
        return []
    details: dict[str, object] = {"device": device, "battery_pct": battery_pct}
    act = _condition(state, AlertType.LOW_BATTERY, device, action)
    if act is None:
        return []
    return [
        ctx.alert(AlertType.LOW_BATTERY, Severity.MEDIUM, act, time, key=device, details=details)
    ]


def watchdog(
    th: Thresholds,
    now: datetime,
    ctx: TransitContext,
    state: MovementState,
    last_received: datetime | None,
    time_limit: datetime | None,
) -> list[AlertEvent]:
    """Wall-clock checks, run periodically: silence (no message received for the
    signal-loss time) and the time limit passed (overdue). ``now`` is an argument."""
    found: list[tuple[AlertType, str, dict[str, object]]] = []
    if last_received is not None and (now - last_received).total_seconds() >= th.signal_lost_s:
        # The same key as the event-time gap rule: one alert for one silence.
        key = state.last.time.isoformat() if state.last else last_received.isoformat()
        found.append((AlertType.SIGNAL_LOST, key, {"last_received": last_received.isoformat()}))
    if time_limit is not None and now > time_limit:
        found.append((AlertType.OVERDUE, "", {"time_limit": time_limit.isoformat()}))
    out = []
    for kind, key, details in found:
        act = _condition(state, kind, key, "open")
        if act is not None:
            out.append(ctx.alert(kind, Severity.HIGH, act, now, key=key, details=details))
    return out
