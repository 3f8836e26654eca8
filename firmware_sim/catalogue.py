"""The detection catalogue: incident scenarios, near misses that must stay silent, and
clean transits, each a simulated truck on the bundled ACTS network.

One catalogue for every test that measures detection: through one pipeline in event
time (tests/unit/test_detection.py) and through the broker and N ingest worker processes
(tests/e2e/test_ingest_scaling.py). Pure and deterministic for its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from firmware_sim.route import Route
from firmware_sim.scenario import TruckPlan, fleet_plan
from firmware_sim.truck import Incident
from transit.geofence.corridor import acts_network
from transit.model import AlertType as A
from transit.model import make_mrn

STEP = 10.0  # seconds between two reports of a truck


@dataclass
class Scenario:
    """One truck, what it meets, and the alert it must raise (None: none at all)."""

    name: str
    plan: TruckPlan
    expect: A | None  # None: a near miss that must stay silent
    window_s: float = 0.0  # the rule's window plus one reporting interval
    onset_s: float = 0.0
    thresholds: dict[str, float] | None = None  # the transit's own thresholds


def _plan(base: TruckPlan, **changes: Any) -> TruckPlan:
    return replace(base, incidents=list(changes.pop("incidents", [])), **changes)


def catalogue() -> list[Scenario]:
    """Every scenario, in a fixed order (device ids DET000, DET001, ...)."""
    plans = {
        p.corridor_id: p
        for p in fleet_plan(acts_network(), 3, seed=5, incidents=False, traffic=False)
    }
    my_th = plans["MY-TH-BKK"]
    sg_my = plans["SG-MY-KUL"]
    th_la = plans["TH-LA-VTE"]
    out: list[Scenario] = []

    def add(
        name: str,
        base: TruckPlan,
        incidents: list[Incident],
        expect: A | None,
        window: float = 0.0,
        onset: float = 0.0,
        thresholds: dict[str, float] | None = None,
        **changes: Any,
    ) -> None:
        dev = f"DET{len(out):03d}"
        p = _plan(
            base,
            incidents=incidents,
            device_id=dev,
            mrn=base.mrn[:12] + f"{len(out):04d}" + base.mrn[16:],
            **changes,
        )
        p = replace(p, mrn=make_mrn(26, p.countries[0], f"DET{len(out):09d}"))
        out.append(Scenario(name, p, expect, window, onset, thresholds))

    exit_s = 750 / (my_th.speed_kmh / 3.6)  # time to leave the corridor sideways
    add(
        "detour off the corridor",
        my_th,
        [Incident("detour", 300)],
        A.ROUTE_DEVIATION,
        60 + exit_s + 2 * STEP,
        300,
    )
    add(
        "driving 900 m beside the route",
        sg_my,
        [Incident("skim", 300, metres=900)],
        A.ROUTE_DEVIATION,
        60 + STEP,
        300,
    )
    add(
        "near miss: skimming 600 m from the centre line",
        sg_my,
        [Incident("skim", 300, metres=600)],
        None,
    )
    add(
        "near miss: 50 s side trip, about 1 km out and back",
        th_la,
        [Incident("detour", 300, 50)],
        None,
    )
    add("seal cut", my_th, [Incident("seal_cut", 200)], A.SEAL_TAMPERED, STEP, 200)
    add("seal opened en route", th_la, [Incident("seal_open", 200)], A.SEAL_OPENED, STEP, 200)
    add("undeclared seal reports", sg_my, [Incident("seal_swap", 200)], A.SEAL_MISMATCH, STEP, 200)
    add(
        "20 min stop on the road",
        my_th,
        [Incident("stop", 300, 1200)],
        A.UNAUTHORIZED_STOP,
        900 + STEP,
        300,
    )
    add("near miss: 14 min stop", my_th, [Incident("stop", 300, 840)], None)
    add(
        "near miss: 40 min rest at a corridor parking",
        my_th,
        [Incident("stop", 0, 2400)],
        None,
        start_m=_metres_to(my_th, 101.0901, 4.5975),
    )
    add(
        "6 min stop where the transit's own limit is 5 min",
        th_la,
        [Incident("stop", 300, 360)],
        A.UNAUTHORIZED_STOP,
        300 + STEP,
        300,
        thresholds={"stop_limit_s": 300},
    )
    add(
        "near miss: 40 min stop at the departure office",
        sg_my,
        [Incident("stop", 0, 2400)],
        None,
        start_m=0.0,
    )
    add(
        "150 s without signal",
        th_la,
        [Incident("tunnel", 300, 150)],
        A.SIGNAL_LOST,
        120 + STEP,
        300,
    )
    add("near miss: 100 s tunnel", th_la, [Incident("tunnel", 300, 100)], None)
    add(
        "battery drained",
        sg_my,
        [Incident("battery_drain", 100)],
        A.LOW_BATTERY,
        int((95 - 15) / 3.0 + 1) * STEP + STEP,
        100,
    )
    add(
        "spoofed fix 30 km off",
        my_th,
        [Incident("jump", 400, metres=30_000)],
        A.GPS_JUMP,
        STEP,
        400,
    )
    add("near miss: multipath jumps of 100 m", my_th, [Incident("multipath", 0)], None)
    add(
        "near miss: duplicated and out-of-order delivery",
        th_la,
        [Incident("duplicate", 0), Incident("reorder", 300, 300)],
        None,
    )
    add("near miss: reboot, backlog uploaded later", sg_my, [Incident("reboot", 300, 90)], None)
    add("near miss: clock drifting", th_la, [Incident("clock_drift", 0)], None)
    # Declared for Malaysia alone, starting near Bukit Kayu Hitam: it drives into Thailand.
    bkh = replace(my_th, start_m=_metres_to(my_th, 100.40, 6.45), countries=["MY"])
    add("entering an undeclared country", bkh, [], A.UNEXPECTED_COUNTRY, 600, 0)
    # Stopping at an office not on its declaration (its departure office, not declared).
    add(
        "stop at an undeclared office",
        replace(sg_my, office_departure="MYJHB001"),
        [Incident("stop", 0, 300)],
        A.WRONG_OFFICE,
        STEP,
        0,
        start_m=0.0,
    )
    near_end = Route(th_la.route).length_m - 3000
    add("near miss: seals opened at the destination office", th_la, [], None, start_m=near_end)
    add(
        "seals opened short of the destination",
        th_la,
        [Incident("seal_open", 100)],
        A.SEAL_OPENED,
        STEP,
        100,
        start_m=near_end - 20_000,
    )
    add(
        "detour after a long clean stretch",
        th_la,
        [Incident("detour", 1800)],
        A.ROUTE_DEVIATION,
        60 + 750 / (th_la.speed_kmh / 3.6) + 2 * STEP,
        1800,
    )
    return out


def _metres_to(plan: TruckPlan, lon: float, lat: float) -> float:
    route = Route(plan.route)
    best = min(
        range(0, int(route.length_m), 500),
        key=lambda s: (route.at(s)[0] - lon) ** 2 + (route.at(s)[1] - lat) ** 2,
    )
    return float(best)


def clean_fleet(trucks: int, seed: int = 21) -> list[TruckPlan]:
    """``trucks`` clean transits with what a clean journey holds (traffic stops, a
    tunnel) and multipath noise: they must raise no alert."""
    plans = fleet_plan(acts_network(), trucks, seed=seed, incidents=False, traffic=True)
    for p in plans:
        p.incidents.append(Incident("multipath", 0))
    return plans
