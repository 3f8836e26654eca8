"""Rules over a transit's stream of fixes, in event time: unauthorised stops, GPS jumps,
gaps in the signal, undeclared countries and offices, low battery.

Pure: the geofence engine has already said, for each fix, its country and (for a slow
fix) the office zone it is in; the rules only remember what they must. Fixes older than
the newest seen are ignored, so late and duplicate fixes raise nothing. Each condition
opens one alert (its ``key`` tells conditions of one type apart) and, where it can
clear, says so once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from transit.model import AlertEvent, AlertType, Severity

EARTH_R = 6_371_008.8


@dataclass(frozen=True)
class Thresholds:
    """Defaults after the EAEU navigation-seal rules and RECTS practice; a corridor or
    a transit may set its own (``dataclasses.replace``)."""

    stop_speed_kmh: float = 5.0  # at or under: stopped
    stop_limit_s: float = 15 * 60  # longer outside a permitted zone: unauthorised stop
    max_speed_kmh: float = 250.0  # a truck cannot go faster: the fix jumped
    jump_min_m: float = 1_000.0  # and a jump is at least this far (multipath is ~100 m)
    reporting_period_s: float = 60.0
    signal_lost_periods: float = 2.0  # no fix for this many periods: signal lost
    low_battery_pct: float = 15.0

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


def _condition(
    state: MovementState,
    ctx: TransitContext,
    kind: AlertType,
    severity: Severity,
    action: str,
    time: datetime,
    key: str = "",
    details: dict[str, object] | None = None,
    lat: float | None = None,
    lon: float | None = None,
) -> AlertEvent | None:
    """Open or clear one condition, once: an open condition does not open again (a GPS
    jump already open takes the later fix as evidence), a closed one does not clear."""
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
    return AlertEvent(
        mrn=ctx.mrn,
        device_id=ctx.device_id,
        type=kind,
        severity=severity,
        action=action,
        time=time,
        lat=lat,
        lon=lon,
        key=key,
        details=details or {},
    )


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
    return _condition(
        state,
        ctx,
        AlertType.GPS_JUMP,
        Severity.HIGH,
        "open",
        fix.time,
        last.time.isoformat(),
        {"jump_m": round(metres), "implied_kmh": round(kmh)},
        fix.lat,
        fix.lon,
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
        ev = _condition(state, ctx, kind, sev, action, fix.time, key, details, fix.lat, fix.lon)
        if ev is not None:
            out.append(ev)

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


def observe_fixes(
    th: Thresholds, state: MovementState, ctx: TransitContext, fixes: list[FixView]
) -> list[AlertEvent]:
    """Feed one transit's fixes (sorted by time) at once.

    A stretch that is plainly clean (moving, in no zone, in declared countries, no gap
    and no jump, nothing pending) can raise nothing: it only moves the state on, so the
    rules' cost follows the anomalies, not the fleet. The rest goes fix by fix."""
    if not fixes:
        return []
    clean = (
        state.stopped_since is None
        and all(f.speed_kmh is None or f.speed_kmh > th.stop_speed_kmh for f in fixes)
        and all(f.zone is None for f in fixes)
        and all(f.country is None or f.country in ctx.countries for f in fixes)
    )
    if clean:
        chain = ([state.last] if state.last is not None else []) + fixes
        for a, b in itertools.pairwise(chain):
            gap = (b.time - a.time).total_seconds()
            if gap <= 0 or gap >= th.signal_lost_s or _may_be_apart(a, b, th.jump_min_m):
                clean = False
                break
    if clean:
        state.last = fixes[-1]
        return []
    out: list[AlertEvent] = []
    for f in fixes:
        out += observe_fix(th, state, ctx, f)
    return out


def _may_be_apart(a: FixView, b: FixView, metres: float) -> bool:
    """Whether two fixes may be ``metres`` apart or more (a cheap, generous bound)."""
    dlat = abs(a.lat - b.lat) * 111_320
    dlon = abs(a.lon - b.lon) * 111_320 * max(0.1, math.cos(math.radians(a.lat)))
    return max(dlat, dlon) >= metres / 1.5


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
    ev = _condition(
        state, ctx, AlertType.LOW_BATTERY, Severity.MEDIUM, action, time, device, details
    )
    return [ev] if ev is not None else []


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
        ev = _condition(state, ctx, kind, Severity.HIGH, "open", now, key, details)
        if ev is not None:
            out.append(ev)
    return out
