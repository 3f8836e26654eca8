"""Covert behaviours: trucks that stay under every alert limit, beside clean trucks whose
natural variation is realistic. For the risk score's measurement (``transit bench risk``).

Covert patterns (issue 15): ``rendezvous`` (two trucks stopped 12 minutes side by side at
night, outside any zone: cargo moved from one to the other), ``short_stops`` (three
13-minute stops where the limit is 15), ``quiet`` (the tracker silent for 100 s, under
the 120 s signal-loss time), ``slow`` (a journey about 40 % slower than the corridor's
trucks, with no stop long enough to alert), and ``mix`` (weaker doses of two or three).
Clean trucks have what ``clean_fleet`` gives (traffic stops of 1 to 4 minutes, a tunnel
of 20 to 60 s, multipath) and, some of them, a traffic slowdown, a rest at a corridor
parking, a roadside stop of 4 to 8 minutes, or a longer tunnel (45 to 75 s).
Deterministic for its seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from firmware_sim.catalogue import _metres_to, clean_fleet
from firmware_sim.route import Route
from firmware_sim.scenario import TruckPlan
from firmware_sim.truck import Incident, Truck
from transit.devices.payload import SealV1, TelemetryV1

PATTERNS = ("rendezvous", "short_stops", "quiet", "slow", "mix")
MEDIAN_KMH = 72.5  # the clean fleet's speeds are uniform over 60 to 85 km/h
PARKINGS = {"MY-TH-BKK": (101.0901, 4.5975), "TH-LA-VTE": (102.0978, 14.9799)}


@dataclass
class Halt:
    """A stop where the truck reaches ``at_m`` along its route, ``for_s`` long."""

    at_m: float
    for_s: float
    started: float | None = None


@dataclass
class Slow:
    """Driving at ``factor`` of its speed from ``at_s`` for ``for_s`` seconds."""

    at_s: float
    for_s: float
    factor: float


@dataclass
class CovertTruck(Truck):
    """A simulated truck that also halts at places and slows down for a while."""

    halts: list[Halt] = field(default_factory=list)
    slows: list[Slow] = field(default_factory=list)

    def step(self, t: datetime) -> tuple[TelemetryV1 | None, list[SealV1]]:
        for h in self.halts:
            if h.started is None and self.s + self.speed_kmh / 3.6 * self.interval_s >= h.at_m:
                h.started = self.elapsed  # it pulls up at the spot, within this interval
                self.s = max(self.s, h.at_m)
        base = self.speed_kmh
        now = self.elapsed + self.interval_s
        for s in self.slows:
            if s.at_s <= now < s.at_s + s.for_s:
                self.speed_kmh = base * s.factor
        try:
            return super().step(t)
        finally:
            self.speed_kmh = base

    def active(self, kind: str) -> Incident | None:
        if kind == "stop":
            for h in self.halts:
                if h.started is not None and h.started <= self.elapsed < h.started + h.for_s:
                    return Incident("stop", h.started, h.for_s)
        return super().active(kind)


@dataclass
class RiskPlan:
    """A truck of the measured fleet: its plan, what it does, and its pattern (None:
    clean)."""

    plan: TruckPlan
    pattern: str | None
    halts: list[Halt] = field(default_factory=list)
    slows: list[Slow] = field(default_factory=list)
    history: tuple[int, int, int] = (0, 0, 0)  # earlier incidents: vehicle, tracker, trader

    def truck(self, seed: int, interval_s: float, noise_m: float) -> CovertTruck:
        """The simulated device."""
        p = self.plan
        return CovertTruck(
            device_id=p.device_id,
            route=Route(p.route),
            seal_ids=p.seal_ids,
            seed=seed,
            start_m=p.start_m,
            speed_kmh=p.speed_kmh,
            interval_s=interval_s,
            noise_m=noise_m,
            incidents=list(p.incidents),
            halts=[replace(h) for h in self.halts],
            slows=list(self.slows),
        )


def _drop_stops(plan: TruckPlan, until_s: float) -> None:
    """Traffic stops before ``until_s`` go (they would shift a planned meeting or
    merge with a planned stop)."""
    plan.incidents = [i for i in plan.incidents if not (i.kind == "stop" and i.at_s < until_s)]


def _clean(rng: random.Random, rp: RiskPlan, duration_s: float) -> None:
    p = rp.plan
    if rng.random() < 0.3:
        rp.slows.append(
            Slow(rng.uniform(300, duration_s / 2), rng.uniform(600, 1200), rng.uniform(0.3, 0.6))
        )
    if p.corridor_id in PARKINGS and rng.random() < 0.3:
        at = _parking_m(p, *PARKINGS[p.corridor_id])
        p.start_m = max(0.0, at - p.speed_kmh / 3.6 * rng.uniform(300, 1800))
        rp.halts.append(Halt(at, rng.uniform(1200, 2700)))
    if rng.random() < 0.1:
        p.incidents.append(
            Incident("stop", rng.uniform(300, duration_s - 600), rng.uniform(240, 480))
        )
    if rng.random() < 0.1:  # its tunnel is longer (one more would overlap it)
        p.incidents = [
            replace(i, for_s=rng.uniform(45, 75)) if i.kind == "tunnel" else i for i in p.incidents
        ]


def _parking_m(plan: TruckPlan, lon: float, lat: float) -> float:
    """Metres along the route nearest a parking: the catalogue's search (each 500 m),
    refined to 10 m so the truck halts well inside the parking's zone."""
    route, rough = Route(plan.route), _metres_to(plan, lon, lat)
    return min(
        (rough + d for d in range(-500, 501, 10)),
        key=lambda s: (route.at(s)[0] - lon) ** 2 + (route.at(s)[1] - lat) ** 2,
    )


def _stops(rng: random.Random, p: TruckPlan, times: list[float], lo: float, hi: float) -> None:
    _drop_stops(p, max(times) + 1200)
    p.incidents += [Incident("stop", t + rng.uniform(0, 120), rng.uniform(lo, hi)) for t in times]


def _covert(
    rng: random.Random, rp: RiskPlan, pattern: str, duration_s: float, upload_s: float
) -> None:
    p = rp.plan

    def quiet() -> None:
        at = upload_s * rng.randint(20, int(duration_s / upload_s) - 20) + 1
        # A tunnel of the clean journey next to it would make one longer silence.
        p.incidents = [
            i for i in p.incidents if not (i.kind == "tunnel" and abs(i.at_s - at) < 400)
        ]
        p.incidents.append(Incident("tunnel", at, 100))

    rp.pattern = pattern
    if pattern == "short_stops":
        _stops(rng, p, [300, 1740, 3180], 750, 810)
    elif pattern == "quiet":
        quiet()
    elif pattern == "slow":
        p.speed_kmh = MEDIAN_KMH * rng.uniform(0.8, 0.88)
        _stops(rng, p, [rng.uniform(600, 1500), rng.uniform(2400, 3300)], 240, 480)
    elif pattern == "mix":
        kinds = rng.sample(["stops", "quiet", "slow"], rng.choice([2, 3]))
        if "stops" in kinds:
            _stops(rng, p, [600, 2400], 660, 800)
        if "quiet" in kinds:
            quiet()
        if "slow" in kinds:
            p.speed_kmh = MEDIAN_KMH * rng.uniform(0.88, 0.95)


def _meet(
    rng: random.Random, a: RiskPlan, b: RiskPlan, zoned: Callable[[float, float], bool]
) -> bool:
    """Plan trucks ``a`` and ``b`` (one corridor) to stop side by side 12 minutes at
    night (50 to 65 minutes in), outside any zone. False: no such place found."""
    route = Route(a.plan.route)
    at_s = rng.uniform(3000, 3900)
    for _ in range(20):
        meet = rng.uniform(0.3, 0.9) * route.length_m
        lon, lat, _ = route.at(meet)
        starts = [meet - rp.plan.speed_kmh / 3.6 * at_s for rp in (a, b)]
        if min(starts) > 0 and not zoned(lon, lat):
            break
    else:
        return False
    for rp, start in zip((a, b), starts, strict=True):
        rp.pattern = "rendezvous"
        rp.plan.start_m = start
        _drop_stops(rp.plan, at_s + 1200)
        rp.halts.append(Halt(meet, rng.uniform(690, 750)))
    return True


def risk_fleet(
    trucks: int,
    covert_share: float,
    seed: int,
    duration_s: float,
    zoned: Callable[[float, float], bool],
    upload_s: float = 30.0,
) -> list[RiskPlan]:
    """``trucks`` trucks, ``covert_share`` of them covert (patterns in turn, a
    rendezvous taking two trucks of one corridor), the rest clean; earlier incidents
    drawn alike for all (the simulator knows no history). A quiet tracker goes quiet
    just after one of its uploads (each ``upload_s`` of the run): the smuggler knows
    its cadence, so the silence the system sees is the 100 s and one report."""
    rng = random.Random(seed * 7919 + 1)
    fleet = [RiskPlan(p, None) for p in clean_fleet(trucks, seed=seed)]
    want = round(trucks * covert_share)
    order = list(range(trucks))
    rng.shuffle(order)
    taken: set[int] = set()
    k = 0
    while sum(rp.pattern is not None for rp in fleet) < want and order:
        i = order.pop()
        if i in taken:
            continue
        pattern = PATTERNS[k % len(PATTERNS)]
        k += 1
        if pattern == "rendezvous":
            j = next(
                (
                    j
                    for j in order
                    if fleet[j].plan.corridor_id == fleet[i].plan.corridor_id and j not in taken
                ),
                None,
            )
            if j is None or not _meet(rng, fleet[i], fleet[j], zoned):
                continue
            taken |= {i, j}
            continue
        taken.add(i)
        _covert(rng, fleet[i], pattern, duration_s, upload_s)
    for i, rp in enumerate(fleet):
        if i not in taken:
            _clean(rng, rp, duration_s)
        rp.history = (_poisson(rng, 0.2), _poisson(rng, 0.2), _poisson(rng, 0.4))
    return fleet


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: small means)."""
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k
