"""One transit's risk features, from its track and events as the system sees them.

The track is the transit's accepted fixes (after the filters, jumped fixes left out)
with, for each, whether it lies in a permitted zone (an office or parking zone, as the
geofence engine's ``zones_of`` says). What the features look for is what stays under
the alert rules' limits (:class:`transit.rules.movement.Thresholds`, the one source of
them): stops outside permitted zones shorter than the stop limit, gaps in the signal
shorter than the signal-loss time, a journey slower than the corridor's past transits
with no single stop long enough to alert. Night is local solar time (UTC plus
longitude / 15 h), 22:00 to 05:00. Pure; no clock is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from transit.rules.movement import EARTH_R, Thresholds

FEATURES = (
    "stops_near_limit",  # stops outside permitted zones of a third of the limit or more
    "stop_minutes",  # minutes stopped outside permitted zones
    "night_stop_minutes",  # of which at night
    "gaps_near_limit",  # gaps of three quarters of the signal-loss time or more, under it
    "gap_seconds",  # seconds dark in gaps of half the signal-loss time or more
    "pace_ratio",  # log2 of time per km against the corridor's past transits' median
    "rendezvous",  # rendezvous alerts (another truck met)
    "seal_events",  # seal reports other than "sealed" (opened, tampered, undeclared)
    "alerts",  # alerts opened on the transit
    "vehicle_incidents",  # earlier incidents of the vehicle
    "tracker_incidents",  # of the tracker
    "trader_incidents",  # of the trader
)
NIGHT = (22.0, 5.0)  # local solar hours: from, to
PACE_SAMPLE_S = 60.0  # fixes this far apart measure the distance (multipath averages out)


@dataclass(frozen=True)
class Track:
    """One transit's accepted fixes as columns, in event-time order."""

    seconds: NDArray[np.float64]  # POSIX seconds
    lons: NDArray[np.float64]
    lats: NDArray[np.float64]
    speeds: NDArray[np.float64]  # km/h, NaN: none
    permitted: NDArray[np.bool_]  # inside an office or parking zone

    @classmethod
    def of(
        cls,
        rows: Sequence[tuple[float, float, float, float | None]],
        permitted: Sequence[bool],
    ) -> Track:
        """From ``(seconds, lon, lat, speed)`` rows and each row's zone verdict."""
        order = np.argsort([r[0] for r in rows], kind="stable")
        col = np.asarray([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
        col = col.reshape(-1, 4)[order]
        return cls(
            col[:, 0], col[:, 1], col[:, 2], col[:, 3], np.asarray(permitted, dtype=bool)[order]
        )


@dataclass(frozen=True)
class Events:
    """What else the system knows of the transit: counts."""

    rendezvous: int = 0
    seal_events: int = 0
    alerts: int = 0
    vehicle_incidents: int = 0
    tracker_incidents: int = 0
    trader_incidents: int = 0


def _ground_m(lons: NDArray[np.float64], lats: NDArray[np.float64]) -> NDArray[np.float64]:
    """Great-circle metres between consecutive points."""
    la, lo = np.radians(lats), np.radians(lons)
    h = (
        np.sin(np.diff(la) / 2) ** 2
        + np.cos(la[:-1]) * np.cos(la[1:]) * np.sin(np.diff(lo) / 2) ** 2
    )
    return np.asarray(2 * EARTH_R * np.arcsin(np.sqrt(np.minimum(h, 1.0))), dtype=np.float64)


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``(first, last)`` indices of each run of True."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def night_seconds(start: float, end: float, lon: float) -> float:
    """Seconds of ``[start, end]`` (POSIX) at night, local solar time at ``lon``: each
    night runs from 22:00 of one local day to 05:00 of the next."""
    shift = lon / 15.0 * 3600.0
    lo, hi = NIGHT[0] * 3600.0, (NIGHT[1] + 24.0) * 3600.0
    day = math.floor((start + shift) / 86400.0) * 86400.0 - shift - 86400.0
    total = 0.0
    while day + lo < end:
        total += max(0.0, min(end, day + hi) - max(start, day + lo))
        day += 86400.0
    return total


def pace(track: Track, th: Thresholds) -> float | None:
    """Seconds per km travelled, leaving out time stopped in permitted zones (a rest
    at a parking is no delay); None when the track is too short to say."""
    n = len(track.seconds)
    if n < 2:
        return None
    stopped = track.speeds <= th.stop_speed_kmh
    step = np.diff(track.seconds)
    rest = float(np.sum(step[(stopped & track.permitted)[1:]]))
    keep = [0]
    for i in range(1, n):
        if track.seconds[i] - track.seconds[keep[-1]] >= PACE_SAMPLE_S:
            keep.append(i)
    if keep[-1] != n - 1:
        keep.append(n - 1)  # the distance runs to the last fix, as the time does
    idx = np.asarray(keep)
    km = float(np.sum(_ground_m(track.lons[idx], track.lats[idx]))) / 1000.0
    elapsed = float(track.seconds[-1] - track.seconds[0]) - rest
    if km < 1.0 or elapsed <= 0:
        return None
    return elapsed / km


def features(
    track: Track,
    events: Events,
    corridor_pace: float | None,
    th: Thresholds | None = None,
) -> dict[str, float]:
    """The features of :data:`FEATURES` for one transit. ``corridor_pace``: the median
    seconds per km of past transits on its corridor (None: no history, ratio 0)."""
    th = th or Thresholds()
    out = dict.fromkeys(FEATURES, 0.0)
    n = len(track.seconds)
    if n:
        stopped = (track.speeds <= th.stop_speed_kmh) & ~track.permitted
        for a, b in _runs(stopped):
            end = float(track.seconds[b + 1] if b + 1 < n else track.seconds[b])
            start = float(track.seconds[a])
            length = end - start
            out["stop_minutes"] += length / 60.0
            lon = float(track.lons[a])
            out["night_stop_minutes"] += night_seconds(start, end, lon) / 60.0
            if th.stop_limit_s / 3 <= length < th.stop_limit_s + PACE_SAMPLE_S:
                out["stops_near_limit"] += 1
        gaps = np.diff(track.seconds)
        near = (gaps >= 0.75 * th.signal_lost_s) & (gaps < th.signal_lost_s)
        out["gaps_near_limit"] = float(np.count_nonzero(near))
        dark = gaps[gaps >= th.signal_lost_s / 2]
        out["gap_seconds"] = float(np.sum(dark))
    p = pace(track, th)
    if p is not None and corridor_pace:
        out["pace_ratio"] = math.log2(p / corridor_pace)
    for name in FEATURES[6:]:
        out[name] = float(getattr(events, name))
    return out


def corridor_paces(paces: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each corridor's median seconds per km over its past transits' paces."""
    return {c: float(np.median(p)) for c, p in paces.items() if len(p)}
