"""``bench risk``: the risk score measured on simulated fleets with covert trucks.

Two fleets (``firmware_sim.covert.risk_fleet``), one seed each: the first trains the
scorer and gives the corridors' past paces, the second (held out) is scored. Each fleet
drives ``duration_s`` in event time through the ingest pipeline (decode, filters,
geofence engine, every rule, the watchdog), its trucks reporting a fix each 10 s and
uploading them each 30 s (after a silence, at once); the rendezvous rule runs over each
upload's fixes as the watchdog lease holder runs it. The features come from what that
pipeline accepted and raised (:mod:`transit.risk.features`). Reports ROC AUC,
precision among the top 5 % and 10 %, the share of covert transits in the top 10 %,
each pattern's share in the top 10 %, the rendezvous alert's precision and recall
(against the trucks planned to meet, ``firmware_sim.covert``), and the alerts the rules
raised on clean transits (must be 0).

:func:`default_model` makes the model a fresh database scores with
(``transit/risk/default_model.json``): the training fleet's model and corridor paces.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from firmware_sim.covert import RiskPlan, risk_fleet
from transit import bootstrap
from transit.devices import payload as wire
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import RawMessage
from transit.model import AlertType, Fix, SealStatus
from transit.risk.features import Events, Track, corridor_paces, features, pace
from transit.risk.model import RiskModel, fit
from transit.rules.movement import Thresholds
from transit.rules.rendezvous import Positions, RendezvousDetector

T0 = datetime(2026, 11, 23, 14, 50, tzinfo=UTC)  # 21:30 local solar time on the corridors
STEP_S = 10.0  # a fix each
UPLOAD_S = 30.0  # uploaded each
NOISE_M = 10.0


@dataclass
class Drive:
    """What one fleet's run left: per transit its fixes, seal events and alerts."""

    plans: list[RiskPlan]
    fixes: dict[str, list[Fix]] = field(default_factory=lambda: defaultdict(list))
    seals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    alerts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def drive(engine: GeofenceEngine, plans: list[RiskPlan], seed: int, duration_s: float) -> Drive:
    """Run the fleet through the pipeline and the rendezvous rule in event time."""
    pipeline = bootstrap.offline_pipeline(engine)
    pipeline.devices = {rp.plan.device_id: None for rp in plans}
    pipeline.set_transits(
        {p.device_id: p.active(T0 + timedelta(days=3)) for p in (rp.plan for rp in plans)},
        set(),
    )
    mrn_of = {rp.plan.device_id: rp.plan.mrn for rp in plans}
    rule = RendezvousDetector(zones=engine.zones_of)
    trucks = [rp.truck(seed * 1000 + i, STEP_S, NOISE_M) for i, rp in enumerate(plans)]
    out = Drive(plans)
    arm = [
        RawMessage(wire.topic_for(t.device_id, "seal"), wire.encode(s))
        for t in trucks
        for s in t.arm_seals(T0)
    ]
    pipeline.process(arm, now=T0)
    uploaded: dict[str, float] = {}  # each device's last upload, seconds into the run
    pending: dict[str, list[wire.FixV1]] = defaultdict(list)
    for k in range(1, int(duration_s / STEP_S) + 1):
        t = T0 + timedelta(seconds=STEP_S * k)
        batch = []
        for truck in trucks:
            tel, seals = truck.step(t)
            batch += [
                RawMessage(wire.topic_for(truck.device_id, "seal"), wire.encode(s)) for s in seals
            ]
            if tel is not None:
                pending[truck.device_id] += tel.fixes
                # Each UPLOAD_S of the run; after a silence, at the first fix (overdue).
                since = STEP_S * k - uploaded.get(truck.device_id, 0.0)
                if (STEP_S * k) % UPLOAD_S == 0 or since > UPLOAD_S:
                    uploaded[truck.device_id] = STEP_S * k
                    msg = wire.TelemetryV1(
                        v=1,
                        seq=tel.seq,
                        fixes=pending.pop(truck.device_id),
                        battery_pct=tel.battery_pct,
                    )
                    batch.append(
                        RawMessage(wire.topic_for(truck.device_id, "telemetry"), wire.encode(msg))
                    )
        if not batch:
            continue
        result = pipeline.process(batch, now=t)
        for f in result.fixes:
            out.fixes[f.device_id].append(f)
        for e in result.seal_events:
            if e.status is not SealStatus.SEALED:
                out.seals[mrn_of[e.device_id]] += 1
        alerts = result.alerts + pipeline.tick(t)
        if result.fixes:
            for r in rule.feed(_positions(result.fixes, mrn_of), t).opened:
                for side in r.trucks:
                    out.alerts[side.mrn or ""].append(AlertType.RENDEZVOUS.value)
        for a in alerts:
            if a.action == "open":
                out.alerts[a.mrn].append(a.type.value)
    return out


def _positions(fixes: list[Fix], mrn_of: dict[str, str]) -> Positions:
    return Positions(
        devices=[f.device_id for f in fixes],
        mrns=[mrn_of.get(f.device_id) for f in fixes],
        lons=np.fromiter((f.lon for f in fixes), np.float64, len(fixes)),
        lats=np.fromiter((f.lat for f in fixes), np.float64, len(fixes)),
        speeds=np.fromiter(
            (np.nan if f.speed_kmh is None else f.speed_kmh for f in fixes), np.float64, len(fixes)
        ),
        seconds=np.fromiter((f.time.timestamp() for f in fixes), np.float64, len(fixes)),
    )


def tracks(engine: GeofenceEngine, run: Drive) -> dict[str, Track]:
    """Each transit's accepted fixes as a track, with the zone verdict of each."""
    out = {}
    for rp in run.plans:
        fixes = run.fixes.get(rp.plan.device_id, [])
        rows = [(f.time.timestamp(), f.lon, f.lat, f.speed_kmh) for f in fixes]
        lons = np.asarray([r[1] for r in rows], dtype=np.float64)
        lats = np.asarray([r[2] for r in rows], dtype=np.float64)
        permitted = (engine.zones_of(lons, lats) >= 0).tolist()
        out[rp.plan.mrn] = Track.of(rows, permitted)
    return out


def fleet_features(
    run: Drive, tracks_of: dict[str, Track], paces: dict[str, float]
) -> list[dict[str, float]]:
    """Each transit's features, against the corridors' past paces."""
    rows = []
    for rp in run.plans:
        mrn = rp.plan.mrn
        raised = run.alerts.get(mrn, [])
        rdv = raised.count(AlertType.RENDEZVOUS.value)
        events = Events(
            rendezvous=rdv,
            seal_events=run.seals.get(mrn, 0),
            alerts=len(raised),
            vehicle_incidents=rp.history[0],
            tracker_incidents=rp.history[1],
            trader_incidents=rp.history[2],
        )
        rows.append(features(tracks_of[mrn], events, paces.get(rp.plan.corridor_id)))
    return rows


def _fleet(
    engine: GeofenceEngine, trucks: int, share: float, seed: int, duration_s: float
) -> tuple[Drive, dict[str, Track]]:
    def zoned(lon: float, lat: float) -> bool:
        return engine.zone_at(lon, lat) is not None

    plans = risk_fleet(trucks, share, seed, duration_s, zoned, UPLOAD_S)
    run = drive(engine, plans, seed, duration_s)
    return run, tracks(engine, run)


def run(
    transits: int = 500,
    covert_share: float = 0.1,
    seed: int = 1,
    duration_s: float = 80 * 60.0,
    train_transits: int | None = None,
) -> dict[str, Any]:
    """Train on fleet ``seed``, score fleet ``seed + 1`` (``transits`` trucks)."""
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    corridors, offices = load_geojson(acts_network())
    engine = GeofenceEngine(corridors, offices, load(default_path()))
    th = Thresholds()
    train, train_tracks = _fleet(engine, train_transits or transits, covert_share, seed, duration_s)
    past: dict[str, list[float]] = defaultdict(list)
    for rp in train.plans:
        p = pace(train_tracks[rp.plan.mrn], th)
        if p is not None:
            past[rp.plan.corridor_id].append(p)
    paces = corridor_paces(past)
    x_train = fleet_features(train, train_tracks, paces)
    model = fit(x_train, [rp.pattern is not None for rp in train.plans], seed=seed)
    test, test_tracks = _fleet(engine, transits, covert_share, seed + 1, duration_s)
    x_test = fleet_features(test, test_tracks, paces)
    scores = [model.score(x) for x in x_test]
    y = np.asarray([rp.pattern is not None for rp in test.plans])
    logits = np.asarray([s.logit for s in scores])
    order = np.argsort(-logits, kind="stable")
    n = len(logits)
    top5, top10 = order[: max(1, round(0.05 * n))], order[: max(1, round(0.10 * n))]
    clean_alerts = [
        a
        for rp in test.plans + train.plans
        if rp.pattern is None
        for a in (test.alerts | train.alerts).get(rp.plan.mrn, [])
    ]
    by_pattern: dict[str, list[bool]] = defaultdict(list)
    in_top = set(top10.tolist())
    for i, rp in enumerate(test.plans):
        if rp.pattern is not None:
            by_pattern[rp.pattern].append(i in in_top)
    covert_alerts = sum(len(test.alerts.get(rp.plan.mrn, [])) for rp in test.plans if rp.pattern)
    met = {rp.plan.mrn for rp in test.plans if rp.pattern == "rendezvous"}
    flagged = {
        rp.plan.mrn
        for rp in test.plans
        if AlertType.RENDEZVOUS.value in test.alerts.get(rp.plan.mrn, [])
    }
    best = int(order[0])
    return {
        "seed_train": seed,
        "seed_test": seed + 1,
        "transits": len(test.plans),
        "train_transits": len(train.plans),
        "covert": int(y.sum()),
        "covert_share": round(float(y.mean()), 3),
        "hours_each": round(duration_s / 3600, 2),
        "roc_auc": round(float(roc_auc_score(y, logits)), 4),
        "precision_top5": round(float(y[top5].mean()), 3),
        "precision_top10": round(float(y[top10].mean()), 3),
        "covert_in_top10": round(float(y[top10].sum() / max(1, y.sum())), 3),
        "covert_in_top10_by_pattern": {
            k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_pattern.items())
        },
        "rendezvous_planned": len(met),
        "rendezvous_flagged": len(flagged),
        "rendezvous_precision": round(len(met & flagged) / len(flagged), 3) if flagged else None,
        "rendezvous_recall": round(len(met & flagged) / len(met), 3) if met else None,
        "clean_transits": int((~y).sum()) + sum(rp.pattern is None for rp in train.plans),
        "clean_alerts": len(clean_alerts),
        "clean_alert_types": sorted(set(clean_alerts)),
        "covert_alerts": covert_alerts,
        "model": model.to_json(),
        "corridor_paces": {k: round(v, 3) for k, v in sorted(paces.items())},
        "top_transit": {
            "mrn": test.plans[best].plan.mrn,
            "pattern": test.plans[best].pattern,
            **scores[best].as_json(),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def loaded(data: dict[str, Any]) -> RiskModel:
    """The model of a report, as scoring takes it."""
    return RiskModel.from_json(data["model"])


def default_model(
    transits: int = 500, covert_share: float = 0.1, seed: int = 1, duration_s: float = 80 * 60.0
) -> dict[str, Any]:
    """The default model's file: the model trained on fleet ``seed`` by :func:`run`, the
    training fleet's corridor paces (what a database without finished transits on a
    corridor compares against), and the run's figures on the held-out fleet.
    ``transit/risk/default_model.json`` is ``default_model()`` (seed 1, 500 transits,
    10 % covert)."""
    report = run(transits, covert_share, seed, duration_s)
    figures = ("roc_auc", "precision_top5", "precision_top10", "covert_in_top10")
    return {
        "model": report["model"],
        "corridor_paces": report["corridor_paces"],
        "trained": {
            "by": "transit.bench.risk.default_model",
            "seed_train": report["seed_train"],
            "seed_test": report["seed_test"],
            "transits": report["transits"],
            "covert_share": covert_share,
            "hours_each": report["hours_each"],
            **{k: report[k] for k in figures},
        },
    }


def write_default_model(path: str | None = None, **kwargs: Any) -> str:
    """Write :func:`default_model` to ``path`` (default: the packaged file, from which
    a fresh database scores); returns the path."""
    import json

    from transit.risk.model import DEFAULT_MODEL_PATH

    target = path or str(DEFAULT_MODEL_PATH)
    with open(target, "w") as f:
        json.dump(default_model(**kwargs), f, indent=1, sort_keys=True)
        f.write("\n")
    return target
