"""Detection quality, measured: simulated transits through the ingest pipeline's rules.

The simulator's messages (encoded as on the wire, with duplicated and out-of-order
delivery where a scenario says so) go through ``Pipeline.process`` (decode, validate,
geofence engine with the real borders, every event-time rule) and ``Pipeline.tick``
(the watchdog), with event time as the clock. Broker and database are left out here:
the end-to-end tests cover that path. Prints precision, recall and detection delays.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.catalogue import STEP, catalogue, clean_fleet
from firmware_sim.fleet import FlakyTransport
from firmware_sim.scenario import TruckPlan
from transit.devices import payload as wire
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.model import AlertType as A

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


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
            p.device_id: p.active(T0 + timedelta(days=3), (thresholds or {}).get(p.device_id))
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


@pytest.mark.timeout(600)
def test_200_clean_transits_raise_no_alert(capsys) -> None:
    plans = clean_fleet(200, seed=21)
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
