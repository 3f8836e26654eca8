"""Route deviation: a truck outside its corridor for longer than the debounce window.

Hysteresis: the alert opens after ``route_debounce_s`` of continuous fixes outside,
and clears (recorded, never erased) after ``route_clear_s`` of continuous fixes back
inside. Fixes not newer than the newest one seen are ignored by the rule, so late and
duplicate fixes can neither raise nor clear anything.

This is the rule's one implementation, over a whole batch: the fixes the rule takes
are found in numpy, then cut into runs inside or outside, and each transit walks its
runs (one run, for a truck on its corridor), finding by search the fix, if any, where
a run has lasted long enough to open or clear the alert. ``tests/rules_oracle.py``
feeds fixes one by one to the rule as its definition reads; ``tests/unit/test_batch_rules.py``
checks that both give the same alerts.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from transit.model import AlertEvent, AlertType, Severity
from transit.rules.movement import Thresholds, TransitContext


@dataclass
class DeviationState:
    """What the rule remembers of one transit."""

    last_time: datetime | None = None
    outside_since: datetime | None = None
    inside_since: datetime | None = None
    alert_open: bool = False


class Deviating(Protocol):
    """A transit as the rule needs it (:class:`transit.rules.batch.TransitRules`)."""

    @property
    def ctx(self) -> TransitContext: ...

    @property
    def thresholds(self) -> Thresholds: ...

    @property
    def deviation(self) -> DeviationState: ...


def deviation_alert(
    ctx: TransitContext,
    action: str,
    time: datetime,
    lat: float,
    lon: float,
    distance_m: float,
    outside_s: float | None = None,
) -> AlertEvent:
    """The route-deviation alert opened (after ``outside_s``) or cleared at one fix."""
    details: dict[str, object] = {"distance_m": round(distance_m, 1)}
    if outside_s is not None:
        details["outside_s"] = outside_s
    return ctx.alert(
        AlertType.ROUTE_DEVIATION, Severity.HIGH, action, time, details=details, lat=lat, lon=lon
    )


def observe_deviation(
    transits: Sequence[Deviating],
    starts: NDArray[np.int64],
    inside: NDArray[np.bool_],
    seconds: NDArray[np.float64],
    times: Sequence[datetime],
    lats: NDArray[np.float64],
    lons: NDArray[np.float64],
    distance_of: Callable[[NDArray[np.int64]], NDArray[np.float64]],
) -> list[AlertEvent]:
    """Run the rule over a batch: ``starts[g]`` is where transit ``g``'s fixes begin
    (each transit's fixes sorted by time, late and duplicate ones among them).

    ``seconds`` is each fix's time as a number, ``times`` the same as datetimes;
    ``distance_of(idx)`` gives the metres from fixes ``idx`` to their route (asked only
    for the fixes that open or clear an alert)."""
    n = len(inside)
    if n == 0:
        return []
    # The fixes the rule takes: those newer than every earlier fix of their transit in
    # the batch (the ones not newer than the fixes seen before are left out below).
    back = np.zeros(n, dtype=bool)
    back[1:] = np.diff(seconds) <= 0
    back[starts] = False
    if back.any():
        taken = np.ones(n, dtype=bool)
        bounds = np.r_[starts, n]
        for g in np.flatnonzero(np.logical_or.reduceat(back, starts)).tolist():
            s, e = int(bounds[g]), int(bounds[g + 1])
            newest = np.maximum.accumulate(seconds[s:e])
            taken[s + 1 : e] = seconds[s + 1 : e] > newest[:-1]
        idx = np.flatnonzero(taken)
        ins, secs, first = inside[idx], seconds[idx], np.searchsorted(idx, starts)
    else:
        idx, ins, secs, first = np.arange(n), inside, seconds, starts
    # Runs of taken fixes inside or outside, none across two transits.
    m = len(idx)
    cut = np.ones(m, dtype=bool)
    cut[1:] = ins[1:] != ins[:-1]
    cut[first] = True  # a transit's first fix is always taken
    run_at = np.flatnonzero(cut)
    first_run: list[int] = np.searchsorted(run_at, np.append(first, m)).tolist()
    run_l, run_in, run_fix = run_at.tolist(), ins[run_at].tolist(), idx[run_at].tolist()
    ends = np.r_[first[1:], m]
    end_l = ends.tolist()
    last_fix = idx[ends - 1].tolist()

    def first_after(a: int, b: int, since: datetime, wait: float) -> int:
        """The first taken fix of ``[a, b)`` at least ``wait`` seconds after ``since``."""
        i = a + int(np.searchsorted(secs[a:b], since.timestamp() + wait - 0.001))
        while i < b and (times[int(idx[i])] - since).total_seconds() < wait:
            i += 1
        return i

    found: list[tuple[Deviating, str, int, float | None]] = []
    for g, t in enumerate(transits):
        r0, r1 = first_run[g], first_run[g + 1]
        dev, th, end = t.deviation, t.thresholds, end_l[g]
        a0, at0 = run_l[r0], times[run_fix[r0]]
        if dev.last_time is not None and at0 <= dev.last_time:
            # A batch that overlaps the fixes already seen: those are left out.
            while a0 < end and times[int(idx[a0])] <= dev.last_time:
                a0 += 1
            if a0 == end:
                continue
            r0 = bisect.bisect_right(run_l, a0, r0, r1) - 1
            at0 = times[int(idx[a0])]
        for r in range(r0, r1):
            a, at = (a0, at0) if r == r0 else (run_l[r], times[run_fix[r]])
            b = run_l[r + 1] if r + 1 < r1 else end
            if run_in[r]:
                dev.outside_since = None
                if dev.inside_since is None:
                    dev.inside_since = at
                if dev.alert_open:
                    i = first_after(a, b, dev.inside_since, th.route_clear_s)
                    if i < b:
                        dev.alert_open = False
                        found.append((t, "clear", int(idx[i]), None))
            else:
                dev.inside_since = None
                if dev.outside_since is None:
                    dev.outside_since = at
                if not dev.alert_open:
                    i = first_after(a, b, dev.outside_since, th.route_debounce_s)
                    if i < b:
                        dev.alert_open = True
                        outside_s = (times[int(idx[i])] - dev.outside_since).total_seconds()
                        found.append((t, "open", int(idx[i]), outside_s))
        dev.last_time = times[last_fix[g]]

    if not found:
        return []
    metres = distance_of(np.asarray([i for _, _, i, _ in found], dtype=np.int64)).tolist()
    return [
        deviation_alert(
            t.ctx, action, times[i], float(lats[i]), float(lons[i]), metres[k], outside_s
        )
        for k, (t, action, i, outside_s) in enumerate(found)
    ]
