"""Detection quality, measured: simulated transits through the ingest pipeline's rules.

The simulator's messages (encoded as on the wire, with duplicated and out-of-order
delivery where a scenario says so) go through ``Pipeline.process`` (decode, validate,
geofence engine with the real borders, every event-time rule) and ``Pipeline.tick``
(the watchdog), with event time as the clock. Broker and database are left out here:
the end-to-end tests cover that path. Prints precision, recall and detection delays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.fleet import FlakyTransport
from firmware_sim.scenario import TruckPlan, fleet_plan
from firmware_sim.truck import Incident
from transit.devices import payload as wire
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.types import ActiveTransit
from transit.model import AlertType as A

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
STEP = 10.0


@dataclass
class Scenario:
    name: str
    plan: TruckPlan
    expect: A | None  # None: a near miss that must stay silent
    window_s: float = 0.0  # the rule's window plus one reporting interval
    onset_s: float = 0.0
    thresholds: dict[str, float] | None = None  # the transit's own thresholds


def drive(
    plans: list[TruckPlan],
    steps: int,
    seed: int,
    thresholds: dict[str, dict[str, float]] | None = None,
) -> dict[str, list[tuple[A, datetime]]]:
    corridors, offices = load_geojson(acts_network())
    pipeline = Pipeline(GeofenceEngine(corridors, offices, load(default_path())))
    pipeline.devices = {p.device_id: None for p in plans}
    pipeline.set_transits(
        {
            p.device_id: ActiveTransit(
                p.mrn,
                p.device_id,
                p.corridor_id,
                tuple(p.seal_ids),
                tuple(p.countries),
                (p.office_departure, *p.offices_transit, p.office_destination),
                T0 + timedelta(days=3),
                (thresholds or {}).get(p.device_id, {}),
            )
            for p in plans
        },
        set(),
    )
    trucks = []
    for i, p in enumerate(plans):
        truck = p.truck(seed * 1000 + i, STEP)
        truck.noise_m = 15.0
        trucks.append(truck)
    transport = FlakyTransport()
    opened: dict[str, list[tuple[A, datetime]]] = {p.mrn: [] for p in plans}
    for truck in trucks:
        pipeline.process(
            [
                RawMessage(wire.topic_for(truck.device_id, "seal"), wire.encode(s))
                for s in truck.arm_seals(T0)
            ],
            now=T0,
        )
    for k in range(1, steps + 1):
        t = T0 + timedelta(seconds=STEP * k)
        batch = []
        for truck in trucks:
            tel, seals = truck.step(t)
            out = [("seal", s) for s in seals] + ([("telemetry", tel)] if tel else [])
            for kind, model in transport.deliver(truck, out):
                batch.append(RawMessage(wire.topic_for(truck.device_id, kind), wire.encode(model)))
        result = pipeline.process(batch, now=t)
        alerts = result.alerts + pipeline.tick(t)
        for a in alerts:
            if a.action == "open":
                opened[a.mrn].append((a.type, t))
    return opened


def _plan(base: TruckPlan, **changes) -> TruckPlan:
    return replace(base, incidents=list(changes.pop("incidents", [])), **changes)


def catalogue() -> list[Scenario]:
    plans = {
        p.corridor_id: p
        for p in fleet_plan(acts_network(), 3, seed=5, incidents=False, traffic=False)
    }
    my_th = plans["MY-TH-BKK"]
    sg_my = plans["SG-MY-KUL"]
    th_la = plans["TH-LA-VTE"]
    out: list[Scenario] = []

    def add(name, base, incidents, expect, window=0.0, onset=0.0, thresholds=None, **changes):
        dev = f"DET{len(out):03d}"
        p = _plan(
            base,
            incidents=incidents,
            device_id=dev,
            mrn=base.mrn[:12] + f"{len(out):04d}" + base.mrn[16:],
            **changes,
        )
        from transit.model import make_mrn

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
    from firmware_sim.route import Route

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
    from firmware_sim.route import Route

    route = Route(plan.route)
    best = min(
        range(0, int(route.length_m), 500),
        key=lambda s: (route.at(s)[0] - lon) ** 2 + (route.at(s)[1] - lat) ** 2,
    )
    return float(best)


@pytest.mark.timeout(600)
def test_200_clean_transits_raise_no_alert(capsys) -> None:
    plans = fleet_plan(acts_network(), 200, seed=21, incidents=False, traffic=True)
    for p in plans:
        p.incidents.append(Incident("multipath", 0))
    opened = drive(plans, steps=360, seed=21)  # an hour each: 72,000 fixes
    false = {m: a for m, a in opened.items() if a}
    with capsys.disabled():
        print(
            f"\nclean transits: {len(plans)}, hours 1 each, false alerts: "
            f"{sum(len(a) for a in false.values())}"
        )
    assert false == {}


def test_incident_catalogue_is_detected_exactly_and_in_time(capsys) -> None:
    scenarios = catalogue()
    assert len(scenarios) >= 20
    own = {s.plan.device_id: s.thresholds for s in scenarios if s.thresholds}
    opened = drive([s.plan for s in scenarios], steps=240, seed=3, thresholds=own)  # 40 min
    tp = fp = fn = 0
    delays = []
    problems = []
    for s in scenarios:
        got = opened[s.plan.mrn]
        kinds = [k for k, _ in got]
        if s.expect is None:
            fp += len(kinds)
            if kinds:
                problems.append(f"{s.name}: unexpected {kinds}")
            continue
        hits = [t for k, t in got if k == s.expect]
        others = [k for k in kinds if k != s.expect]
        fp += len(others) + max(0, len(hits) - 1)
        if others or len(hits) > 1:
            problems.append(f"{s.name}: also {others or hits}")
        if not hits:
            fn += 1
            problems.append(f"{s.name}: {s.expect.value} not raised")
            continue
        tp += 1
        delay = (hits[0] - (T0 + timedelta(seconds=s.onset_s))).total_seconds()
        delays.append((s.name, delay, s.window_s))
        if delay > s.window_s:
            problems.append(f"{s.name}: raised after {delay:.0f} s > {s.window_s:.0f} s")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    with capsys.disabled():
        print(
            f"\nincident scenarios: {len(scenarios)}, precision {precision:.3f}, "
            f"recall {recall:.3f}"
        )
        for name, delay, window in delays:
            print(f"  {name}: raised {delay:.0f} s after onset (window {window:.0f} s)")
    assert problems == []
