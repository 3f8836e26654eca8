"""The corridor and movement rules over a whole batch of fixes at once.

Pure, like the rules it drives. The batch is sorted by transit, then by event time.
Every condition that could make a stretch of fixes interesting (outside the corridor,
slow, in a zone, in an undeclared country, a gap, a jump, older than the fix before)
is computed for all fixes in a few numpy operations; a transit whose stretch has none
of them, and nothing pending, only moves its state on; so does a stop with nothing
else about it that ends under the stop limit. The others go fix by fix
through the same rules as always (:func:`observe_fixes`, :func:`observe_stretch`), so
the batch gives exactly the alerts the fix-by-fix path gives (tested).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from transit.geofence.engine import Checked
from transit.model import AlertEvent
from transit.rules.deviation import DeviationRule, DeviationState, observe_stretch
from transit.rules.movement import (
    FixView,
    MovementState,
    Thresholds,
    TransitContext,
    observe_fixes,
)

M_PER_DEG = 111_320.0


@dataclass
class TransitRules:
    """One transit as the rules see it: its declaration, thresholds and state."""

    ctx: TransitContext
    thresholds: Thresholds = field(default_factory=Thresholds)
    rule: DeviationRule = field(default_factory=DeviationRule)
    deviation: DeviationState = field(default_factory=DeviationState)
    movement: MovementState = field(default_factory=MovementState)
    country_ids: frozenset[int] = frozenset()  # declared countries, as engine integers


def observe_batch(
    checked: Checked,
    lons: NDArray[np.float64],
    lats: NDArray[np.float64],
    speeds: NDArray[np.float64],
    seconds: NDArray[np.float64],
    times: Sequence[datetime],
    starts: NDArray[np.int64],
    transits: Sequence[TransitRules],
) -> list[AlertEvent]:
    """Run the rules over a batch: ``starts[g]`` is where transit ``g``'s fixes begin.

    ``seconds`` is each fix's event time as a number, ``times`` the same as datetimes;
    ``speeds`` is NaN where a fix has none."""
    n = len(lons)
    if n == 0:
        return []
    counts = np.diff(np.r_[starts, n])
    ends = starts + counts
    # same[i]: fixes i and i + 1 belong to one transit.
    same = np.ones(max(n - 1, 0), dtype=bool)
    same[starts[1:] - 1] = False

    def per_fix(values: list[float]) -> NDArray[np.float64] | float:
        first = values[0]
        if all(v == first for v in values):
            return first  # the usual case: one scalar, not an array of the batch's size
        return np.repeat(values, counts)

    stop_kmh = per_fix([t.thresholds.stop_speed_kmh for t in transits])
    lost_s = per_fix([t.thresholds.signal_lost_s for t in transits])
    jump_m = per_fix([t.thresholds.jump_min_m for t in transits])

    # "Busy" fixes are those the movement rules must see one by one.
    stopped = speeds <= stop_kmh
    # Busy for another reason than a stop: a zone, a country, a gap, a jump, time order.
    other = checked.zone_id >= 0
    # Undeclared countries, looked up once per run of fixes in one country.
    cid = checked.country_id
    change = np.ones(n, dtype=bool)
    change[1:] = (cid[1:] != cid[:-1]) | ~same
    heads = np.flatnonzero(change)
    group_of = np.searchsorted(starts, heads, side="right") - 1
    bad_run = np.asarray(
        [
            c >= 0 and c not in transits[g].country_ids
            for c, g in zip(cid[heads].tolist(), group_of.tolist(), strict=True)
        ],
        dtype=bool,
    )
    if bad_run.any():
        other |= np.repeat(bad_run, np.diff(np.r_[heads, n]))
    # Between consecutive fixes of one transit: no gap, no jump, time moving on. The
    # jump test is generous (the largest cosine in the batch): it may send a fix the
    # slow way, never let a jump through.
    gap = np.diff(seconds)
    lost = lost_s if isinstance(lost_s, float) else lost_s[1:]
    jump = (jump_m if isinstance(jump_m, float) else jump_m[1:]) / 1.5 / M_PER_DEG
    cos = max(0.1, math.cos(math.radians(float(np.min(np.abs(lats))))))
    step = gap >= lost
    step |= np.abs(np.diff(lats)) >= jump
    step |= np.abs(np.diff(lons)) >= jump / cos
    backwards = np.zeros(n, dtype=bool)
    backwards[1:] = (gap <= 0) & same
    other[1:] |= step & same
    other |= backwards
    busy = stopped | other
    flagged = np.logical_or.reduceat(busy, starts).tolist()
    # The deviation rule only cares for fixes outside (and for time order).
    outside = ~checked.inside
    strays = np.logical_or.reduceat(outside, starts).tolist()
    unordered = np.logical_or.reduceat(backwards, starts).tolist()

    def next_in(value: bool, pos: int, end: int) -> int:
        """The first fix in ``[pos, end)`` whose busy flag is ``value``, else ``end``."""
        window = busy[pos:end]
        k = int(np.argmax(window)) if value else int(np.argmin(window))
        return pos + k if window[k] == value else end

    b = _Batch(checked, lons, lats, speeds, seconds, times)
    # What a quiet transit leaves in the state: its last fix; and where it starts.
    last_views = b.views(ends - 1)
    s_l, e_l = starts.tolist(), ends.tolist()
    first_lat, first_lon = lats[starts].tolist(), lons[starts].tolist()
    first_s = seconds[starts].tolist()

    events: list[AlertEvent] = []
    for g, t in enumerate(transits):
        dev, mov = t.deviation, t.movement
        s, e = s_l[g], e_l[g]
        # The movement rules.
        if (
            not flagged[g]
            and mov.stopped_since is None
            and (mov.last is None or _follows(mov.last, first_lat[g], first_lon[g], first_s[g], t))
        ):
            mov.last = last_views[g]
        else:
            pos = s
            while pos < e:
                nb = next_in(True, pos, e)
                if (
                    nb > pos
                    and mov.stopped_since is None
                    and (
                        mov.last is None
                        or _follows(mov.last, lats[pos], lons[pos], seconds[pos], t)
                    )
                ):
                    mov.last = b.views(np.array([nb - 1]))[0]  # a quiet stretch: no alert
                    pos = nb
                    continue
                # Fix by fix: a busy run whole, else one fix (the state may settle).
                run_end = next_in(False, pos, e) if nb == pos else pos + 1
                if (
                    nb == pos
                    and _short_stop(mov, t, times, pos, run_end, other, stopped)
                    and (
                        mov.last is None
                        or _follows(mov.last, lats[pos], lons[pos], seconds[pos], t)
                    )
                ):
                    # A stop and nothing else, shorter than the limit: it raises nothing.
                    mov.stopped_since = mov.stopped_since or times[pos]
                    mov.last = b.views(np.array([run_end - 1]))[0]
                else:
                    views = b.views(np.arange(pos, run_end))
                    events += observe_fixes(t.thresholds, mov, t.ctx, views)
                pos = run_end
        # The route-deviation rule.
        last = times[e - 1]
        if not strays[g] and dev.outside_since is None and not dev.alert_open:
            if dev.last_time is None or last > dev.last_time:
                if dev.inside_since is None:
                    dev.inside_since = times[s]
                dev.last_time = last
        elif unordered[g] or (dev.last_time is not None and times[s] <= dev.last_time):
            events += observe_stretch(
                t.rule,
                dev,
                mrn=t.ctx.mrn,
                device_id=t.ctx.device_id,
                times=list(times[s:e]),
                inside=checked.inside[s:e].tolist(),
                lats=lats[s:e].tolist(),
                lons=lons[s:e].tolist(),
                distance_m=lambda i, s=s: b.distance(s + i),  # type: ignore[misc]
            )
        else:
            events += b.deviation_runs(s, e, t)
    return events


@dataclass(frozen=True)
class _Batch:
    """The arrays of one batch, and what the rules' slow paths take from them."""

    checked: Checked
    lons: NDArray[np.float64]
    lats: NDArray[np.float64]
    speeds: NDArray[np.float64]
    seconds: NDArray[np.float64]
    times: Sequence[datetime]

    def views(self, idx: NDArray[np.int64]) -> list[FixView]:
        """The fixes at these indices as the movement rules see them."""
        c = self.checked
        codes, refs = [*c.country_codes, None], [*c.zone_refs, None]
        country = [codes[k] for k in c.country_id[idx].tolist()]
        zone = [refs[k] for k in c.zone_id[idx].tolist()]
        la, lo, sp = self.lats[idx].tolist(), self.lons[idx].tolist(), self.speeds[idx].tolist()
        return [
            FixView(
                self.times[i], la[j], lo[j], None if sp[j] != sp[j] else sp[j], country[j], zone[j]
            )
            for j, i in enumerate(idx.tolist())
        ]

    def distance(self, i: int) -> float:
        """Metres from fix ``i`` to its corridor's route (asked only for an alert)."""
        return float(self.checked.distance_of(np.array([i]))[0])

    def deviation_runs(self, s: int, e: int, t: TransitRules) -> list[AlertEvent]:
        """The deviation rule over fixes ``[s, e)`` in strict time order, a run of fixes
        inside or outside at a time: the same decisions as fix by fix (tested), found
        by search."""
        dev, rule, times = t.deviation, t.rule, self.times
        inside = self.checked.inside[s:e]
        secs = self.seconds[s:e]
        cuts = [0, *(np.flatnonzero(inside[1:] != inside[:-1]) + 1).tolist(), e - s]
        out: list[AlertEvent] = []

        def first_after(a: int, b: int, since: datetime, wait: float) -> int:
            """The first fix of [a, b) at least ``wait`` seconds after ``since``."""
            i = a + int(np.searchsorted(secs[a:b], since.timestamp() + wait - 0.001))
            while i < b and (times[s + i] - since).total_seconds() < wait:
                i += 1
            return i

        def event(action: str, i: int, outside_s: float | None = None) -> AlertEvent:
            return rule._event(
                action,
                t.ctx.mrn,
                t.ctx.device_id,
                times[i],
                float(self.lats[i]),
                float(self.lons[i]),
                lambda: self.distance(i),
                outside_s,
            )

        for a, b in itertools.pairwise(cuts):
            if inside[a]:
                dev.outside_since = None
                if dev.inside_since is None:
                    dev.inside_since = times[s + a]
                if dev.alert_open:
                    i = first_after(a, b, dev.inside_since, rule.clear_s)
                    if i < b:
                        dev.alert_open = False
                        out.append(event("clear", s + i))
            else:
                dev.inside_since = None
                if dev.outside_since is None:
                    dev.outside_since = times[s + a]
                if not dev.alert_open:
                    i = first_after(a, b, dev.outside_since, rule.debounce_s)
                    if i < b:
                        dev.alert_open = True
                        outside_s = (times[s + i] - dev.outside_since).total_seconds()
                        out.append(event("open", s + i, outside_s))
        dev.last_time = times[e - 1]
        return out


def _short_stop(
    mov: MovementState,
    t: TransitRules,
    times: Sequence[datetime],
    s: int,
    e: int,
    other: NDArray[np.bool_],
    stopped: NDArray[np.bool_],
) -> bool:
    """Whether fixes ``[s, e)`` are a stop and nothing else, ending under the stop limit
    (counted from where the stop began, maybe in an earlier batch)."""
    if other[s:e].any() or not stopped[s:e].all():
        return False
    since = mov.stopped_since or times[s]
    return (times[e - 1] - since).total_seconds() < t.thresholds.stop_limit_s


def _follows(last: FixView, lat: float, lon: float, at_s: float, t: TransitRules) -> bool:
    """Whether a fix follows ``last`` with no gap, no jump and time moving on."""
    th = t.thresholds
    gap = at_s - last.time.timestamp()
    if gap <= 0 or gap >= th.signal_lost_s:
        return False
    cos = max(0.1, math.cos(math.radians(last.lat)))
    apart = max(abs(lat - last.lat), abs(lon - last.lon) * cos) * M_PER_DEG
    return apart < th.jump_min_m / 1.5
