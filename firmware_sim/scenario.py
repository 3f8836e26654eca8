"""Fleet scenarios: which truck drives which corridor, and which incidents it meets.

A scenario is a pure function of its size and seed, so the demo's provisioning and
the simulator agree on every device id, seal id and MRN without talking.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from firmware_sim.route import Route
from firmware_sim.truck import Incident, Truck
from transit.ingest.types import ActiveTransit
from transit.model import make_mrn


@dataclass
class TruckPlan:
    """Everything needed to declare a transit for a simulated truck and to drive it."""

    device_id: str
    mrn: str
    corridor_id: str
    route: list[tuple[float, float]]
    countries: list[str]
    office_departure: str
    offices_transit: list[str]
    office_destination: str
    seal_ids: list[str]
    start_m: float
    speed_kmh: float
    incidents: list[Incident] = field(default_factory=list)

    def truck(self, seed: int, interval_s: float = 10.0) -> Truck:
        """The simulated device for this plan."""
        return Truck(
            device_id=self.device_id,
            route=Route(self.route),
            seal_ids=self.seal_ids,
            seed=seed,
            start_m=self.start_m,
            speed_kmh=self.speed_kmh,
            interval_s=interval_s,
            incidents=list(self.incidents),
        )

    def active(
        self, time_limit: datetime, thresholds: dict[str, float] | None = None
    ) -> ActiveTransit:
        """The transit as ingest follows it once released (in transit), with its own
        ``thresholds`` over the corridor's."""
        return ActiveTransit(
            self.mrn,
            self.device_id,
            self.corridor_id,
            tuple(self.seal_ids),
            tuple(self.countries),
            (self.office_departure, *self.offices_transit, self.office_destination),
            time_limit,
            dict(thresholds or {}),
        )


def fleet_plan(
    network: dict[str, Any],
    trucks: int,
    seed: int = 1,
    incidents: bool = True,
    year: int = 26,
    traffic: bool = True,
    depart_after_s: float | None = None,
) -> list[TruckPlan]:
    """``trucks`` trucks spread over the network's corridors, a few with incidents.

    With ``traffic``, every truck meets what a clean journey holds: one to three
    traffic stops of one to four minutes and a tunnel of 20 to 60 s without a fix,
    somewhere in its first two hours. With ``incidents``: truck 3 leaves its corridor
    20 s in, truck 7 has a seal cut 30 s in, truck 11 leaves its corridor 60 s in (all
    when the fleet is that large).

    Without ``depart_after_s`` the trucks start somewhere along their route. With it,
    each starts parked at its office of departure (inside the office's zone, near its
    edge on the route; a route starts at that office), reporting with its seals armed,
    and drives off ``depart_after_s`` seconds in: the time the office has to declare
    and release it. Every incident then comes that much later.
    """
    rng = random.Random(seed)
    corridors = [f for f in network["features"] if f["properties"]["kind"] == "corridor"]
    plans = []
    for i in range(trucks):
        feat = corridors[i % len(corridors)]
        props = feat["properties"]
        route = [(float(c[0]), float(c[1])) for c in feat["geometry"]["coordinates"]]
        length = Route(route).length_m
        dev = f"TRK{seed:02d}{i:05d}"
        plans.append(
            TruckPlan(
                device_id=dev,
                mrn=make_mrn(year, props["countries"][0], f"S{seed:03d}T{i:07d}"[-12:]),
                corridor_id=feat["id"],
                route=route,
                countries=list(props["countries"]),
                office_departure=props["office_departure"],
                offices_transit=list(props["offices_transit"]),
                office_destination=props["office_destination"],
                # Manufacturer id and serial, as the binary e-seal frame carries them.
                seal_ids=[f"ES{seed % 100:02d}-{2 * i + k:010d}" for k in (0, 1)],
                start_m=rng.uniform(0.05, 0.8) * length,
                speed_kmh=rng.uniform(60, 85),
            )
        )
        if traffic:
            plans[-1].incidents += [
                Incident("stop", rng.uniform(120, 7200), rng.uniform(60, 240))
                for _ in range(rng.randint(1, 3))
            ]
            plans[-1].incidents.append(
                Incident("tunnel", rng.uniform(120, 7200), rng.uniform(20, 60))
            )
    if incidents:
        for idx, inc in (
            (3, Incident("detour", 20)),
            (7, Incident("seal_cut", 30)),
            (11, Incident("detour", 60)),
        ):
            if idx < len(plans):
                plans[idx].incidents.append(inc)
    if depart_after_s is not None:
        radius = {
            f["id"]: float(f["properties"]["radius_m"])
            for f in network["features"]
            if f["properties"]["kind"] == "office"
        }
        for p in plans:
            p.start_m = 0.8 * radius[p.office_departure]
            p.incidents = [replace(i, at_s=i.at_s + depart_after_s) for i in p.incidents]
            if depart_after_s > 0:
                p.incidents.insert(0, Incident("parked", 0.0, depart_after_s))
    return plans
