"""Which fixes are believed: the filters every fix passes before it is stored, drawn or
shown to the rules.

A fix is filtered, with one reason (the first that applies, in this order):

- ``out_of_range``: latitude outside -90..90 or longitude outside -180..180;
- ``null_island``: exactly 0, 0 (a receiver without a position writes zeros);
- ``future``: taken more than ``future_s`` after the server's clock (``now``);
- ``poor_accuracy``: an ``hdop`` above ``max_hdop`` (a fix without one passes);
- ``stale``: more than ``stale_s`` older than the device's newest fix (stored before,
  or in the same batch): a clock that lost its time (a reset to 1980, a GPS week
  rollover). The bound is against the device's own newest data, not the server clock,
  so a backlog uploaded late after a tunnel or an outage is accepted;
- ``jump``: the gps_jump rule's jump (away from the transit's last good fix, further
  than ``jump_min_m`` and faster than ``max_speed_kmh``): it still raises gps_jump.

The first five are decided for the whole batch at once in numpy (:func:`screen`); the
jump needs the transit's rule state and is decided by :func:`find_jumps`, fix by fix
only for the transits whose fixes may have jumped. Pure: ``now`` is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from transit.model import AlertEvent, Fix
from transit.rules.batch import M_PER_DEG, TransitRules
from transit.rules.movement import FixView, jump_alert, jump_of

# Reason codes as :func:`screen` returns them (0: the fix is accepted).
REASONS = ("", "out_of_range", "null_island", "future", "poor_accuracy", "stale", "jump")
OUT_OF_RANGE, NULL_ISLAND, FUTURE, POOR_ACCURACY, STALE, JUMP = range(1, 7)


@dataclass(frozen=True)
class FixFilters:
    """The filters' bounds (environment: ``TRANSIT_FILTER_FUTURE_S``, ``_STALE_S``,
    ``_MAX_HDOP``). The jump filter takes the gps_jump rule's thresholds."""

    future_s: float = 300.0  # clock tolerance: GNSS time is exact, server clocks drift
    stale_s: float = 7 * 86_400.0  # older than the device's newest fix by more: filtered
    max_hdop: float = 10.0  # above 10 a fix is a rough estimate at best

    def __post_init__(self) -> None:
        for name in ("future_s", "stale_s", "max_hdop"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"filter bound {name} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class FilteredFix:
    """A fix kept apart, with why: never drawn, never fed to the rules."""

    fix: Fix
    reason: str
    detail: str


@dataclass(frozen=True)
class Screened:
    """A batch's fixes as columns (in the order they came), with the filters' verdict."""

    fixes: list[Fix]
    names: list[str]  # the batch's devices
    device: NDArray[np.int64]  # each fix's device, an index into ``names``
    seconds: NDArray[np.float64]
    lats: NDArray[np.float64]
    lons: NDArray[np.float64]
    speeds: NDArray[np.float64]  # NaN where a fix has none
    code: NDArray[np.int8]  # reason code, 0: accepted
    newest: dict[str, float]  # each device's newest accepted fix, epoch seconds

    def accepted(self) -> list[Fix]:
        """The fixes that passed, in order."""
        if not self.code.any():
            return self.fixes
        return [self.fixes[i] for i in np.flatnonzero(self.code == 0).tolist()]

    def filtered(self, bounds: FixFilters, now: datetime | None) -> list[FilteredFix]:
        """The fixes that did not, each with its reason and what was wrong."""
        out = []
        for i in np.flatnonzero(self.code).tolist():
            f, c = self.fixes[i], int(self.code[i])
            newest = self.newest.get(f.device_id, -math.inf)
            out.append(FilteredFix(f, REASONS[c], describe(f, c, bounds, now, newest)))
        return out


def screen_fixes(
    fixes: list[Fix], now: datetime | None, newest: dict[str, float], bounds: FixFilters
) -> Screened:
    """Lay a batch's fixes out as columns and screen them (:func:`screen`).

    ``newest`` is each device's newest stored fix (epoch seconds); ``now`` the server's
    clock (None: no future test)."""
    n = len(fixes)
    index: dict[str, int] = {}
    device = np.fromiter((index.setdefault(f.device_id, len(index)) for f in fixes), np.int64, n)
    seconds = np.fromiter((f.time.timestamp() for f in fixes), np.float64, n)
    lats = np.fromiter((f.lat for f in fixes), np.float64, n)
    lons = np.fromiter((f.lon for f in fixes), np.float64, n)
    nan = math.nan
    speeds = np.fromiter(
        (nan if f.speed_kmh is None else f.speed_kmh for f in fixes), np.float64, n
    )
    hdops = np.fromiter((nan if f.hdop is None else f.hdop for f in fixes), np.float64, n)
    names = list(index)
    before = np.fromiter((newest.get(d, -math.inf) for d in names), np.float64, len(names))
    code, moved = screen(
        seconds, lats, lons, hdops, device, before, None if now is None else now.timestamp(), bounds
    )
    after = {d: t for d, t in zip(names, moved.tolist(), strict=True) if t > -math.inf}
    return Screened(fixes, names, device, seconds, lats, lons, speeds, code, after)


def screen(
    seconds: NDArray[np.float64],
    lats: NDArray[np.float64],
    lons: NDArray[np.float64],
    hdops: NDArray[np.float64],
    device: NDArray[np.int64],
    newest: NDArray[np.float64],
    now_s: float | None,
    bounds: FixFilters,
) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    """The reason code of each fix of a batch (0: accepted), all fixes at once.

    ``seconds`` is each fix's time (epoch seconds), ``hdops`` NaN where a fix has
    none, ``device`` the index of its device into ``newest``: each device's newest
    stored fix (-inf when none). ``now_s`` None skips the future test. Returns the
    codes and ``newest`` moved on by the fixes accepted."""
    code = np.zeros(len(seconds), dtype=np.int8)

    def mark(mask: NDArray[np.bool_], reason: int) -> None:
        code[mask & (code == 0)] = reason

    mark((np.abs(lats) > 90) | (np.abs(lons) > 180), OUT_OF_RANGE)
    mark((lats == 0) & (lons == 0), NULL_ISLAND)
    if now_s is not None:
        mark(seconds > now_s + bounds.future_s, FUTURE)
    mark(hdops > bounds.max_hdop, POOR_ACCURACY)  # NaN (no hdop) compares False
    ok = code == 0
    moved = newest.copy()
    np.maximum.at(moved, device[ok], seconds[ok])
    # A stale fix is older than the newest by definition: the newest stays as it is.
    mark(seconds < moved[device] - bounds.stale_s, STALE)
    return code, moved


def describe(
    fix: Fix, reason: int, bounds: FixFilters, now: datetime | None, newest_s: float
) -> str:
    """What was wrong with a filtered fix, for the operator."""
    if reason == OUT_OF_RANGE:
        return f"lat {fix.lat}, lon {fix.lon}: outside -90..90, -180..180"
    if reason == NULL_ISLAND:
        return "lat 0, lon 0: a receiver without a position"
    if reason == FUTURE and now is not None:
        ahead = fix.time.timestamp() - now.timestamp()
        return f"{ahead:.0f} s ahead of the server clock (tolerance {bounds.future_s:g} s)"
    if reason == POOR_ACCURACY:
        return f"hdop {fix.hdop:g} above {bounds.max_hdop:g}"
    if reason == STALE:
        behind = newest_s - fix.time.timestamp()
        return f"{behind:.0f} s older than the device's newest fix (bound {bounds.stale_s:g} s)"
    return REASONS[reason]


def find_jumps(
    lons: NDArray[np.float64],
    lats: NDArray[np.float64],
    seconds: NDArray[np.float64],
    times: Sequence[datetime],
    starts: NDArray[np.int64],
    transits: Sequence[TransitRules],
) -> tuple[dict[int, str], list[AlertEvent]]:
    """The fixes that jumped, with a detail for each, and their gps_jump alerts.

    The batch is laid out as for :func:`transit.rules.batch.observe_batch` (by transit,
    then time). Each fix is compared, as the gps_jump rule compares it, with the
    transit's last good fix (a jumped fix does not become it; an older one is not
    compared). A transit whose consecutive fixes are all near each other, in time
    order, has no jump: the generous test in numpy sends the others fix by fix."""
    n = len(lons)
    if n == 0:
        return {}, []
    counts = np.diff(np.r_[starts, n])
    per_transit = [t.thresholds.jump_min_m / 1.5 / M_PER_DEG for t in transits]
    # Degrees apart that may be a jump (one scalar in the usual case: one threshold).
    same = all(v == per_transit[0] for v in per_transit)
    near_g = per_transit[0] if same else np.asarray(per_transit)
    near = per_transit[0] if same else np.repeat(per_transit, counts)[1:]
    s_l = starts.tolist()
    e_l = [*s_l[1:], n]
    # Each transit's last good fix, from the rules' state (NaN: none yet), and whether
    # the transit's first fix here is newer.
    nan = math.nan
    refs = np.array(
        [
            (nan, nan, 1.0) if r is None else (r.lat, r.lon, float(times[s] > r.time))
            for r, s in zip((t.movement.last for t in transits), s_l, strict=True)
        ],
        dtype=np.float64,
    ).reshape(len(transits), 3)
    # Generous (the largest cosine of the batch): it may send a transit the slow way,
    # never let a jump through.
    least = min(float(np.min(np.abs(lats))), float(np.nanmin(np.abs(refs[:, 0]), initial=90.0)))
    cos = max(0.1, math.cos(math.radians(least)))
    suspect = np.zeros(n, dtype=bool)
    suspect[1:] = (
        (np.abs(np.diff(lats)) >= near)
        | (np.abs(np.diff(lons)) >= near / cos)
        | (np.diff(seconds) <= 0)
    )
    suspect[starts] = False  # a transit's first fix is compared with its last good one
    first_near = (
        (refs[:, 2] > 0)
        & (np.abs(lats[starts] - refs[:, 0]) < near_g)
        & (np.abs(lons[starts] - refs[:, 1]) < near_g / cos)
    )
    slow = np.logical_or.reduceat(suspect, starts) | (~np.isnan(refs[:, 0]) & ~first_near)
    jumped: dict[int, str] = {}
    events: list[AlertEvent] = []
    for g in np.flatnonzero(slow).tolist():
        t = transits[g]
        s, e = s_l[g], e_l[g]
        ref = t.movement.last
        th = t.thresholds
        for i in range(s, e):
            view = FixView(times[i], float(lats[i]), float(lons[i]), None, None, None)
            if ref is not None:
                if view.time <= ref.time:
                    continue  # late: the rules ignore it, it is no reference
                jump = jump_of(th, ref, view)
                if jump is not None:
                    metres, kmh = jump
                    jumped[i] = (
                        f"{metres:.0f} m from the fix of {ref.time.isoformat()} at an implied"
                        f" {kmh:.0f} km/h (over {th.max_speed_kmh:g} km/h)"
                    )
                    ev = jump_alert(t.movement, t.ctx, ref, view, metres, kmh)
                    if ev is not None:
                        events.append(ev)
                    continue
            ref = view
    return jumped, events
