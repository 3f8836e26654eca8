"""The risk score over the repositories: kept up to date by ingest as telemetry arrives,
and trained again from history.

Ingest calls :func:`update` in a batch's transaction, after the rules, for the transits
whose messages the batch evaluated: it reads their accumulators and alert counts (one
statement), folds the batch's fixes and seal events in (:mod:`transit.risk.running`),
scores them with the newest model and writes them back (one statement). A transit
scored the first time also reads its history (earlier incidents of its vehicle, tracker
and trader) and its corridor's median pace. The batch holds its transits' rule state
locks, so two workers never update one transit's score at once.

Which model: the newest of ``risk_models`` (:func:`train` adds one from the finished
transits' features and what their inspections found), else the packaged default
(``transit/risk/default_model.json``, version 0), trained on the simulator's fleets by
:func:`transit.bench.risk.default_model`. The corridor paces that default came with
stand in for a corridor with fewer than ten finished transits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from transit.db import risk as stored
from transit.db.query import Conn
from transit.ingest.pipeline import BatchResult, Pipeline, rules_config
from transit.model import SealStatus
from transit.risk.features import FEATURES, Events
from transit.risk.model import Packaged, RiskModel, Score, fit, packaged
from transit.risk.running import Running

_models: dict[int, RiskModel] = {}  # version -> model, read once per process
_default: list[Packaged] = []


def default() -> Packaged:
    """The packaged default model, read once."""
    if not _default:
        _default.append(packaged())
    return _default[0]


def model_of(conn: Conn, version: int | None) -> tuple[int, RiskModel]:
    """The model of ``version`` (None: the packaged default, version 0), over the
    features the system computes (:meth:`RiskModel.over`: a stored model's retired
    features, such as ``near_rendezvous``, fold into its intercept)."""
    if version is None:
        return 0, default().model
    if version not in _models:
        data = stored.model(conn, version)
        if data is None:
            return 0, default().model
        _models[version] = RiskModel.from_json(data).over(FEATURES)
    return version, _models[version]


def update(conn: Conn, pipeline: Pipeline, result: BatchResult, mrns: Mapping[str, str]) -> int:
    """Score again the transits (``mrns``: device -> MRN) this batch brought fixes or
    seal reports of, in the caller's transaction. Returns how many were scored."""
    fixes: dict[str, list[Any]] = defaultdict(list)
    for f in result.fixes:
        if f.device_id in mrns:
            fixes[f.device_id].append(f)
    seals: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for e in result.seal_events:
        if e.device_id in mrns:
            seals[e.device_id].append((e.seq, e.status is not SealStatus.SEALED))
    devices = sorted(set(fixes) | set(seals))
    if not devices:
        return 0
    mrn_of = {d: mrns[d] for d in devices}
    rows, version = stored.read(conn, sorted(set(mrn_of.values())))
    by_mrn = {r.mrn: r for r in rows}
    new = [r.mrn for r in rows if r.running is None]
    history = stored.history(conn, new) if new else {}
    paces = stored.corridor_paces(conn, new) if new else {}
    version, model = model_of(conn, version)
    out = []
    for dev in devices:
        row = by_mrn[mrn_of[dev]]
        active = pipeline.transits.get(dev)
        th = pipeline.thresholds
        if active is not None and active.thresholds:
            th = rules_config(active.thresholds, th)
        running = Running.from_json(row.running)
        running.add(_rows(pipeline, fixes.get(dev, []), th.stop_speed_kmh), th)
        counted = [(seq, odd) for seq, odd in seals.get(dev, []) if seq > row.seal_seq]
        seal_events = row.seal_events + sum(odd for _, odd in counted)
        seal_seq = max([row.seal_seq, *(seq for seq, _ in counted)])
        if row.running is None:
            hist = history.get(row.mrn, {})
            corridor, median = paces.get(row.mrn, ("", None))
            pace = median if median is not None else default().corridor_paces.get(corridor)
        else:
            hist, pace = row.history or {}, row.corridor_pace
        events = Events(
            rendezvous=row.rendezvous,
            seal_events=seal_events,
            alerts=row.alerts,
            **{k: int(v) for k, v in hist.items()},
        )
        values = running.features(events, pace, th)
        score = model.score(values)
        out.append(
            stored.NewScore(
                row.mrn,
                score.probability,
                score.level,
                score.as_json()["reasons"],
                values,
                version,
                running.to_json(),
                seal_events,
                seal_seq,
                dict(hist),
                pace,
                running.pace(),
            )
        )
    stored.save(conn, out)
    return len(out)


def _rows(
    pipeline: Pipeline, fixes: list[Any], stop_kmh: float
) -> list[tuple[float, float, float, float | None, bool]]:
    """The fixes as the accumulators take them, each with whether it lies in an office
    or parking zone (asked of the geofence engine only for the stopped ones: a moving
    fix's zone counts for nothing)."""
    if not fixes:
        return []
    stopped = [
        i for i, f in enumerate(fixes) if f.speed_kmh is not None and f.speed_kmh <= stop_kmh
    ]
    zoned = np.zeros(len(fixes), dtype=bool)
    if stopped and pipeline.engine is not None:
        lons = np.asarray([fixes[i].lon for i in stopped], dtype=np.float64)
        lats = np.asarray([fixes[i].lat for i in stopped], dtype=np.float64)
        zoned[stopped] = pipeline.engine.zones_of(lons, lats) >= 0
    return [
        (f.time.timestamp(), f.lon, f.lat, f.speed_kmh, bool(zoned[i])) for i, f in enumerate(fixes)
    ]


def train(conn: Conn, min_each: int = 10, seed: int = 0) -> dict[str, Any]:
    """Fit a model on the finished transits' features, labelled by whether an
    inspection found something or an incident was recorded, and store it as the next
    version (it scores from the next batch on). ``transit risk train``.

    Returns:
        The version, the counts of each label and the fitted model's in-sample AUC.

    Raises:
        ValueError: fewer than ``min_each`` transits of either label.
    """
    from sklearn.metrics import roc_auc_score

    labelled = stored.labelled(conn)
    rows = [{k: float(v) for k, v in r["features"].items()} for r in labelled]
    labels = [int(bool(r["found"])) for r in labelled]
    found, clean = sum(labels), len(labels) - sum(labels)
    if min(found, clean) < min_each:
        raise ValueError(
            f"training needs at least {min_each} finished transits where something was"
            f" found and {min_each} where nothing was: there are {found} and {clean}"
        )
    model = fit(rows, labels, seed=seed, features=FEATURES)
    logits = [model.score(r).logit for r in rows]
    metrics = {
        "transits": len(labels),
        "found": found,
        "clean": clean,
        "auc_in_sample": round(float(roc_auc_score(labels, logits)), 4),
    }
    version = stored.add_model(conn, model.to_json(), metrics)
    return {"version": version, **metrics}


def shown(score: Score) -> dict[str, Any]:
    """A score as the API shows it."""
    data = score.as_json()
    return {"probability": data["probability"], "level": data["level"], "reasons": data["reasons"]}
