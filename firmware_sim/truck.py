"""A simulated truck: a GPS tracker with e-seals on its doors, driven along a route.

Deterministic for a seed. Realistic driving: speeds around a cruise speed, GPS
noise, traffic stops, tunnels without a fix, the seals armed at departure and
opened at destination. Injected incidents and firmware faults come from a scenario:
a detour off the corridor, a seal cut or opened en route, battery drain, a reboot
(seq carried on from flash, the backlog uploaded in one batch), clock drift.
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
    """An injected event ``kind`` at ``at_s`` seconds into the run (``for_s`` long).

    Kinds: ``detour``, ``seal_cut``, ``seal_open``, ``seal_swap`` (a seal not declared
    reports), ``skim`` (driving ``metres`` beside the route) (incidents); ``battery_drain``,
    ``reboot``, ``clock_drift``, ``tunnel``, ``stop``, ``jump`` (one fix ``metres`` off),
    ``multipath`` (1 fix in 10 off by about 100 m) (conditions and faults); ``parked``
    (standing at the office of departure, reporting, until it is released).
    """

    kind: str
    at_s: float
    for_s: float = 0.0
    seal_index: int = 0
    metres: float = 0.0  # for skim (sideways offset) and jump (one fix moved north)


@dataclass
class Flash:
    """What the tracker keeps across a reboot: its last seq and unsent fixes."""

    seq: int = 0
    backlog: list[FixV1] = field(default_factory=list)


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
    flash: Flash = field(default_factory=Flash)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.s = self.start_m
        self.elapsed = 0.0
        self.detour_m = 0.0  # metres off the route, sideways
        self.detour_heading = 0.0
        self.counter = dict.fromkeys(self.seal_ids, 0)
        self.battery = 95.0
        self.clock_offset_s = 0.0
        self.arrived = False
        self._done: set[int] = set()

    @property
    def seq(self) -> int:
        """The last seq used (kept in flash)."""
        return self.flash.seq

    def _next_seq(self) -> int:
        self.flash.seq += 1
        return self.flash.seq

    def active(self, kind: str) -> Incident | None:
        """The incident of ``kind`` in force now (``for_s`` 0: from ``at_s`` on, for good)."""
        for inc in self.incidents:
            end = inc.at_s + inc.for_s if inc.for_s else math.inf
            if inc.kind == kind and inc.at_s <= self.elapsed < end:
                return inc
        return None

    def arm_seals(self, t: datetime) -> list[SealV1]:
        """The seals report ``sealed`` at departure."""
        return [self._seal(sid, SealStatus.SEALED, t) for sid in self.seal_ids]

    def breach(self, t: datetime, index: int = 0) -> SealV1:
        """A seal cut now (an operator injecting an incident into a running fleet)."""
        return self._seal(self.seal_ids[index % len(self.seal_ids)], SealStatus.TAMPERED, t)

    def _seal(self, seal_id: str, status: SealStatus, t: datetime) -> SealV1:
        self.counter[seal_id] += 1
        lon, lat, _ = self.position()
        return SealV1(
            v=1,
            seq=self._next_seq(),
            seal_id=seal_id,
            t=t + timedelta(seconds=self.clock_offset_s),
            status=status,
            counter=self.counter[seal_id],
            battery_pct=round(max(0.0, self.battery - 5), 1),
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

    def _events(self, t: datetime) -> list[SealV1]:
        seals: list[SealV1] = []
        for i, inc in enumerate(self.incidents):
            if self.elapsed < inc.at_s or i in self._done:
                continue
            if inc.kind == "seal_swap":
                self._done.add(i)
                self.counter.setdefault("ES99-9999999999", 0)
                seals.append(self._seal("ES99-9999999999", SealStatus.SEALED, t))
            if inc.kind in ("seal_cut", "seal_open"):
                self._done.add(i)
                sid = self.seal_ids[inc.seal_index % len(self.seal_ids)]
                status = SealStatus.TAMPERED if inc.kind == "seal_cut" else SealStatus.OPENED
                seals.append(self._seal(sid, status, t))
        return seals

    def _fix_faults(self, lon: float, lat: float, heading: float) -> tuple[float, float]:
        skim = self.active("skim")
        if skim is not None:
            rad = math.radians(heading + 90)
            lon, lat = offset(lon, lat, skim.metres * math.sin(rad), skim.metres * math.cos(rad))
        for i, inc in enumerate(self.incidents):
            if inc.kind == "jump" and self.elapsed >= inc.at_s and i not in self._done:
                self._done.add(i)
                lon, lat = offset(lon, lat, 0.0, inc.metres)
        if self.active("multipath") and self.rng.random() < 0.1:
            a = self.rng.uniform(0, 2 * math.pi)
            lon, lat = offset(lon, lat, 100 * math.sin(a), 100 * math.cos(a))
        return lon, lat

    def step(self, t: datetime) -> tuple[TelemetryV1 | None, list[SealV1]]:
        """Advance one reporting interval: the telemetry to send (None while the
        tracker is rebooting) and any seal reports."""
        dt = self.interval_s
        self.elapsed += dt
        seals = self._events(t)
        if self.active("clock_drift"):
            self.clock_offset_s += 2.0  # a drifting oscillator: +2 s every report
        self.battery = max(0.0, self.battery - (3.0 if self.active("battery_drain") else 0.003))
        stopped = self.active("stop") is not None or self.active("parked") is not None
        speed = 0.0 if stopped or self.arrived else max(0.0, self.speed_kmh + self.rng.gauss(0, 3))
        if self.active("detour"):
            if not self.detour_m:
                self.detour_heading = (self.route.at(self.s)[2] + 90) % 360
            self.detour_m += speed / 3.6 * dt
        elif self.detour_m > 0:  # a detour that ended: drive back to the route
            self.detour_m = max(0.0, self.detour_m - speed / 3.6 * dt)
        else:
            self.s = min(self.s + speed / 3.6 * dt, self.route.length_m)
            if self.s >= self.route.length_m and not self.arrived:
                self.arrived = True  # at destination: the officer opens the seals
                seals += [self._seal(sid, SealStatus.OPENED, t) for sid in self.seal_ids]
        fix = None
        if not self.active("tunnel"):
            lon, lat, heading = self.position()
            lon, lat = offset(
                lon, lat, self.rng.gauss(0, self.noise_m), self.rng.gauss(0, self.noise_m)
            )
            lon, lat = self._fix_faults(lon, lat, heading)
            fix = FixV1(
                t=t + timedelta(seconds=self.clock_offset_s),
                lat=round(lat, 7),
                lon=round(lon, 7),
                speed_kmh=round(speed, 1),
                course_deg=round(heading, 1) % 360,
                hdop=round(0.8 + self.rng.random(), 1),
                sats=self.rng.randint(7, 14),
            )
        if self.active("reboot"):
            if fix is not None:
                self.flash.backlog.append(fix)  # logged to flash, sent after the reboot
            return None, seals
        fixes = [*self.flash.backlog, *([fix] if fix else [])]
        self.flash.backlog = []
        if not fixes:
            return None, seals
        telemetry = TelemetryV1(
            v=1, seq=self._next_seq(), fixes=fixes[-500:], battery_pct=round(self.battery, 1)
        )
        return telemetry, seals
