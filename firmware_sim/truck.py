"""A simulated truck: a GPS tracker with e-seals on its doors, driven along a route.

Deterministic for a seed. Incidents are injected by a scenario: a detour off the
corridor, a seal cut or opened en route.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from firmware_sim.route import Route, offset
from transit.devices.payload import FixV1, SealV1, TelemetryV1
from transit.model import SealStatus


@dataclass
class Incident:
    """An injected fault: ``kind`` at ``at_s`` seconds into the run."""

    kind: str  # "detour" | "seal_cut" | "seal_open"
    at_s: float
    seal_index: int = 0


@dataclass
class Truck:
    """One tracker (device id) and its seals, moving along a route."""

    device_id: str
    route: Route
    seal_ids: list[str]
    seed: int
    start_m: float = 0.0
    speed_kmh: float = 75.0
    interval_s: float = 10.0
    noise_m: float = 5.0
    incidents: list[Incident] = field(default_factory=list)
    seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.s = self.start_m
        self.elapsed = 0.0
        self.detour_m = 0.0  # metres off the route, sideways
        self.detour_heading = 0.0
        self.counter = dict.fromkeys(self.seal_ids, 0)
        self._done: set[int] = set()

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def arm_seals(self, t: datetime) -> list[SealV1]:
        """The seals report ``sealed`` at departure."""
        return [self._seal(sid, "sealed", t) for sid in self.seal_ids]

    def _seal(self, seal_id: str, status: str, t: datetime) -> SealV1:
        self.counter[seal_id] += 1
        lon, lat, _ = self.position()
        return SealV1(
            v=1,
            seq=self._next_seq(),
            seal_id=seal_id,
            t=t,
            status=SealStatus(status),
            counter=self.counter[seal_id],
            battery_pct=round(90 - self.elapsed / 3600, 1),
            lat=round(lat, 7),
            lon=round(lon, 7),
        )

    def position(self) -> tuple[float, float, float]:
        """(lon, lat, heading) now, including any detour."""
        lon, lat, heading = self.route.at(self.s)
        if self.detour_m:
            rad = math.radians(self.detour_heading)
            lon, lat = offset(
                lon, lat, self.detour_m * math.sin(rad), self.detour_m * math.cos(rad)
            )
            heading = self.detour_heading
        return lon, lat, heading

    def step(self, t: datetime) -> tuple[TelemetryV1, list[SealV1]]:
        """Advance one reporting interval; returns the telemetry and any seal reports."""
        dt = self.interval_s
        self.elapsed += dt
        seals: list[SealV1] = []
        detouring = False
        for i, inc in enumerate(self.incidents):
            if self.elapsed < inc.at_s:
                continue
            if inc.kind == "detour":
                detouring = True
                if not self.detour_m:
                    _, _, h = self.route.at(self.s)
                    self.detour_heading = (h + 90) % 360
            elif i not in self._done:
                self._done.add(i)
                sid = self.seal_ids[inc.seal_index % len(self.seal_ids)]
                seals.append(self._seal(sid, "tampered" if inc.kind == "seal_cut" else "opened", t))
        speed = max(0.0, self.speed_kmh + self.rng.gauss(0, 3))
        if detouring:
            self.detour_m += speed / 3.6 * dt
        else:
            self.s = min(self.s + speed / 3.6 * dt, self.route.length_m)
            if self.s >= self.route.length_m:
                speed = 0.0
        lon, lat, heading = self.position()
        lon, lat = offset(
            lon, lat, self.rng.gauss(0, self.noise_m), self.rng.gauss(0, self.noise_m)
        )
        fix = FixV1(
            t=t,
            lat=round(lat, 7),
            lon=round(lon, 7),
            speed_kmh=round(speed, 1),
            course_deg=round(heading, 1) % 360,
            hdop=round(0.8 + self.rng.random(), 1),
            sats=self.rng.randint(7, 14),
        )
        telemetry = TelemetryV1(
            v=1, seq=self._next_seq(), fixes=[fix], battery_pct=round(95 - self.elapsed / 3600, 1)
        )
        return telemetry, seals


def tick_times(start: datetime, interval_s: float, count: int) -> list[datetime]:
    """Event times of ``count`` reporting intervals after ``start``."""
    return [start + timedelta(seconds=interval_s * (i + 1)) for i in range(count)]
