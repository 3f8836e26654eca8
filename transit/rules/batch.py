"""The rules over a whole batch of fixes at once: the only way ingest runs them.

Pure, like the rules it drives. The batch is sorted by transit, then by event time.
Route deviation runs over the batch in :mod:`transit.rules.deviation`. For the
movement rules (:func:`transit.rules.movement.observe_fix`), every condition that
could make a fix interesting (slow, in a zone, in an undeclared country, a gap, a
jump, older than the fix before) is computed for all fixes in a few numpy operations;
a stretch of fixes with none of them, and nothing pending, only moves the state on;
so does a stop with nothing else about it that ends under the stop limit. The others
go fix by fix through ``observe_fix``, so the batch gives exactly the alerts of
feeding every fix to the rules (tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from transit.geofence.engine import Checked
from transit.model import AlertEvent
from transit.rules.deviation import DeviationState, observe_deviation
from transit.rules.movement import (
    FixView,
    MovementState,
    Thresholds,
    TransitContext,
    observe_fix,
)

M_PER_DEG = 111_320.0


@dataclass
class TransitRules:
    """One transit as the rules see it: its declaration, thresholds and state."""

    ctx: TransitContext
    thresholds: Thresholds = field(default_factory=Thresholds)
    deviation: DeviationState = field(default_factory=DeviationState)
    movement: MovementState = field(default_factory=MovementState)
    country_ids: frozenset[int] = frozenset()  # declared countries, as engine integers


def per_fix(
    values: Sequence[float], starts: NDArray[np.int64], n: int
) -> NDArray[np.float64] | float:
    """One value per transit as one per fix (the batch laid out by ``starts``): a
    scalar when every transit has the same, the usual case."""
    first = values[0] if len(values) else 0.0
    if all(v == first for v in values):
        return first
    return np.repeat(np.asarray(values, dtype=np.float64), np.diff(np.r_[starts, n]))


def stop_speeds(
    transits: Sequence[TransitRules], starts: NDArray[np.int64], n: int
) -> NDArray[np.float64] | float:
    """Each fix's stop speed (its transit's): what the geofence engine needs to find the
    zones of the fixes that may be stopped."""
    return per_fix([t.thresholds.stop_speed_kmh for t in transits], starts, n)


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
    ``speeds`` is NaN where a fix has none. ``checked`` is the engine's answer for the
    batch, its zones found with :func:`stop_speeds`."""
    n = len(lons)
    if n == 0:
        return []
    events = _observe_movement(
        _Batch(checked, lons, lats, speeds, seconds, times), starts, transits
    )
    events += observe_deviation(
        transits, starts, checked.inside, seconds, times, lats, lons, checked.distance_of
    )
    return events


def _observe_movement(
    b: _Batch, starts: NDArray[np.int64], transits: Sequence[TransitRules]
) -> list[AlertEvent]:
    """The movement rules over a batch (see the module's docstring)."""
    checked, lons, lats = b.checked, b.lons, b.lats
    speeds, seconds, times = b.speeds, b.seconds, b.times
    n = len(lons)
    ends = np.r_[starts[1:], n]
    # same[i]: fixes i and i + 1 belong to one transit.
    same = np.ones(max(n - 1, 0), dtype=bool)
    same[starts[1:] - 1] = False
    lost_s = per_fix([t.thresholds.signal_lost_s for t in transits], starts, n)
    jump_m = per_fix([t.thresholds.jump_min_m for t in transits], starts, n)

    # "Busy" fixes are those the movement rules must see one by one.
    stopped = speeds <= stop_speeds(transits, starts, n)  # NaN: no speed, not stopped
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
    other[1:] |= step & same
    other[1:] |= (gap <= 0) & same
    busy = stopped | other
    flagged = np.logical_or.reduceat(busy, starts).tolist()

    def next_in(value: bool, pos: int, end: int) -> int:
        """The first fix in ``[pos, end)`` whose busy flag is ``value``, else ``end``."""
        window = busy[pos:end]
        k = int(np.argmax(window)) if value else int(np.argmin(window))
        return pos + k if window[k] == value else end

    # What a quiet transit leaves in the state: its last fix; and where it starts.
    last_views = b.views(ends - 1)
    s_l, e_l = starts.tolist(), ends.tolist()
    first = list(
        zip(lats[starts].tolist(), lons[starts].tolist(), seconds[starts].tolist(), strict=True)
    )

    events: list[AlertEvent] = []
    for g, t in enumerate(transits):
        mov = t.movement
        pos, e = s_l[g], e_l[g]
        while pos < e:
            # A quiet stretch from here (the whole rest for a transit with no busy fix)
            # that follows the state's last fix raises nothing: the state moves on.
            quiet = next_in(True, pos, e) if flagged[g] else e
            at = first[g] if pos == s_l[g] else (lats[pos], lons[pos], seconds[pos])
            follows = mov.last is None or _follows(mov.last, *at, t)
            if quiet > pos and mov.stopped_since is None and follows:
                mov.last = last_views[g] if quiet == e else b.views(np.array([quiet - 1]))[0]
                pos = quiet
                continue
            # Fix by fix: a busy run whole, else one fix (the state may settle).
            run_end = next_in(False, pos, e) if quiet == pos else pos + 1
            if (
                quiet == pos
                and follows
                and _short_stop(mov, t, times, pos, run_end, other, stopped)
            ):
                # A stop and nothing else, shorter than the limit: it raises nothing.
                mov.stopped_since = mov.stopped_since or times[pos]
                mov.last = b.views(np.array([run_end - 1]))[0]
            else:
                for view in b.views(np.arange(pos, run_end)):
                    events += observe_fix(t.thresholds, mov, t.ctx, view)
            pos = run_end
    return events


@dataclass(frozen=True)
class _Batch:
    """The arrays of one batch, as the movement rules see its fixes."""

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
