"""A transit's track features kept up to date fix by fix, as telemetry arrives.

:func:`transit.risk.features.features` reads a whole track; ingest sees a transit's
fixes a batch at a time and must not read the track back for every batch. A
:class:`Running` holds what the track features need (the first and newest fix, the
stop under way outside permitted zones, the pace's last distance sample, sums and
counts) and :meth:`Running.add` folds a batch's fixes into it; :meth:`Running.features`
then gives the same values as :func:`~transit.risk.features.features` over every fix
so far (a unit test folds a track in chunks and compares). It is a JSON object, kept
with the transit's score. A fix older than the newest one folded in is left out (a
device's fixes come in seq order, so in time order; a redelivered batch adds nothing).
Pure; no clock is read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from transit.risk.features import FEATURES, PACE_SAMPLE_S, Events, night_seconds
from transit.rules.movement import EARTH_R, Thresholds

LAYOUT = 1  # of the JSON form


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle metres (the haversine of :func:`transit.risk.features._ground_m`)."""
    la1, la2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_R * math.asin(math.sqrt(min(h, 1.0)))


@dataclass
class Running:
    """The track features' accumulators of one transit (see the module)."""

    fixes: int = 0
    first_s: float | None = None
    last_s: float | None = None
    last_lon: float = 0.0
    last_lat: float = 0.0
    sample_s: float = 0.0  # the pace's newest distance sample
    sample_lon: float = 0.0
    sample_lat: float = 0.0
    metres: float = 0.0  # between the samples so far
    rest_s: float = 0.0  # stopped inside permitted zones
    stop_s: float = 0.0  # stops outside permitted zones that ended
    night_stop_s: float = 0.0
    stops_near: int = 0
    run_start_s: float | None = None  # the stop outside permitted zones under way
    run_lon: float = 0.0
    gaps_near: int = 0
    dark_s: float = 0.0

    def add(
        self, rows: Iterable[tuple[float, float, float, float | None, bool]], th: Thresholds
    ) -> int:
        """Fold ``(seconds, lon, lat, speed or None, permitted)`` fixes in, in time
        order (a fix not newer than the newest folded in is left out). Returns how many
        were taken."""
        taken = 0
        for t, lon, lat, speed, permitted in sorted(rows, key=lambda r: r[0]):
            if self.last_s is not None and t <= self.last_s:
                continue
            stopped = speed is not None and speed <= th.stop_speed_kmh
            if self.last_s is None:
                self.first_s = self.sample_s = t
                self.sample_lon, self.sample_lat = lon, lat
            else:
                gap = t - self.last_s
                if 0.75 * th.signal_lost_s <= gap < th.signal_lost_s:
                    self.gaps_near += 1
                if gap >= th.signal_lost_s / 2:
                    self.dark_s += gap
                if stopped and permitted:
                    self.rest_s += gap
                if t - self.sample_s >= PACE_SAMPLE_S:
                    self.metres += _metres(self.sample_lon, self.sample_lat, lon, lat)
                    self.sample_s, self.sample_lon, self.sample_lat = t, lon, lat
            outside = stopped and not permitted
            if outside and self.run_start_s is None:
                self.run_start_s, self.run_lon = t, lon
            elif not outside and self.run_start_s is not None:
                self._close_run(self.run_start_s, t, th)
                self.run_start_s = None
            self.last_s, self.last_lon, self.last_lat = t, lon, lat
            self.fixes += 1
            taken += 1
        return taken

    def _close_run(self, start: float, end: float, th: Thresholds) -> None:
        s, night, near = self._run(start, end, th)
        self.stop_s += s
        self.night_stop_s += night
        self.stops_near += near

    def _run(self, start: float, end: float, th: Thresholds) -> tuple[float, float, int]:
        length = end - start
        near = int(th.stop_limit_s / 3 <= length < th.stop_limit_s + PACE_SAMPLE_S)
        return length, night_seconds(start, end, self.run_lon), near

    def pace(self) -> float | None:
        """Seconds per km so far, time at rest in permitted zones left out (None: too
        short to say), as :func:`transit.risk.features.pace` gives it."""
        if self.fixes < 2 or self.first_s is None or self.last_s is None:
            return None
        metres = self.metres
        if self.last_s != self.sample_s:  # the distance runs to the newest fix
            metres += _metres(self.sample_lon, self.sample_lat, self.last_lon, self.last_lat)
        elapsed = self.last_s - self.first_s - self.rest_s
        if metres < 1000.0 or elapsed <= 0:
            return None
        return elapsed / (metres / 1000.0)

    def features(
        self, events: Events, corridor_pace: float | None, th: Thresholds
    ) -> dict[str, float]:
        """The features of :data:`~transit.risk.features.FEATURES` so far; a stop under
        way counts up to the newest fix."""
        out = dict.fromkeys(FEATURES, 0.0)
        stop_s, night_s, near = self.stop_s, self.night_stop_s, self.stops_near
        if self.run_start_s is not None and self.last_s is not None:
            s, night, n = self._run(self.run_start_s, self.last_s, th)
            stop_s, night_s, near = stop_s + s, night_s + night, near + n
        out["stops_near_limit"] = float(near)
        out["stop_minutes"] = stop_s / 60.0
        out["night_stop_minutes"] = night_s / 60.0
        out["gaps_near_limit"] = float(self.gaps_near)
        out["gap_seconds"] = self.dark_s
        p = self.pace()
        if p is not None and corridor_pace:
            out["pace_ratio"] = math.log2(p / corridor_pace)
        for name in FEATURES[6:]:
            out[name] = float(getattr(events, name))
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept with the score."""
        return {"v": LAYOUT, **vars(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Running:
        """From :meth:`to_json` (None or ``{}``: nothing folded in yet).

        Raises:
            ValueError: another layout, or an unknown field.
        """
        if not data:
            return cls()
        if data.get("v") != LAYOUT:
            raise ValueError(f"risk accumulators of layout {data.get('v')!r}")
        unknown = set(data) - _FIELDS - {"v"}
        if unknown:
            raise ValueError(f"risk accumulators: unknown fields {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k != "v"})


_FIELDS = frozenset(f.name for f in fields(Running))
