"""The risk score: features on hand-made tracks, the explanation adding up to the score,
the model as JSON, and a small run of the measurement (simulated fleets through the
ingest pipeline, covert trucks among clean ones)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from transit.bench.risk import run
from transit.risk.features import FEATURES, Events, Track, features, pace
from transit.risk.model import RiskModel, fit
from transit.risk.running import Running
from transit.rules.movement import Thresholds

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC).timestamp()  # 13:00 local solar at 105 E
NIGHT_T0 = datetime(2026, 11, 23, 16, 0, tzinfo=UTC).timestamp()  # 23:00 local
M_PER_DEG = 111_195.0


def track(
    kmh: float = 72.0,
    minutes: float = 60.0,
    stop: tuple[float, float] | None = None,  # (from minute, for minutes)
    gap: tuple[float, float] | None = None,  # (from minute, seconds without a fix)
    permitted: bool = False,  # the stop is inside a parking zone
    t0: float = T0,
) -> Track:
    """A truck driving north along 105 E, a fix each 10 s."""
    rows, zone = [], []
    lat, t = 10.0, t0
    while t < t0 + minutes * 60:
        m = (t - t0) / 60
        stopped = stop is not None and stop[0] <= m < stop[0] + stop[1]
        dark = gap is not None and gap[0] * 60 <= t - t0 < gap[0] * 60 + gap[1]
        speed = 0.0 if stopped else kmh
        if not dark:
            rows.append((t, 105.0, lat, speed))
            zone.append(permitted and stopped)
        lat += speed / 3.6 * 10 / M_PER_DEG
        t += 10
    return Track.of(rows, zone)


def test_a_13_minute_stop_outside_zones_counts_one_in_a_parking_does_not() -> None:
    outside = features(track(stop=(20, 13)), Events(), None)
    parked = features(track(stop=(20, 13), permitted=True), Events(), None)
    short = features(track(stop=(20, 2)), Events(), None)
    assert outside["stops_near_limit"] == 1
    assert outside["stop_minutes"] == pytest.approx(13, abs=0.2)
    assert outside["night_stop_minutes"] == 0
    assert parked["stops_near_limit"] == 0 and parked["stop_minutes"] == 0
    assert short["stops_near_limit"] == 0  # a traffic stop: minutes, not a near-limit stop
    assert short["stop_minutes"] == pytest.approx(2, abs=0.2)


def test_a_stop_at_night_counts_its_night_minutes() -> None:
    night = features(track(stop=(20, 13), t0=NIGHT_T0), Events(), None)
    assert night["night_stop_minutes"] == pytest.approx(13, abs=0.2)


def test_a_100_s_gap_counts_a_40_s_one_does_not() -> None:
    assert Thresholds().signal_lost_s == 120
    quiet = features(track(gap=(30, 100)), Events(), None)
    tunnel = features(track(gap=(30, 40)), Events(), None)
    assert quiet["gaps_near_limit"] == 1
    assert quiet["gap_seconds"] == pytest.approx(110)
    assert tunnel["gaps_near_limit"] == 0 and tunnel["gap_seconds"] == 0


def test_a_journey_40_percent_slower_than_the_corridor_shows_in_its_pace_ratio() -> None:
    usual = pace(track(kmh=72.0), Thresholds())
    assert usual is not None and usual == pytest.approx(50.0, rel=0.01)  # s per km at 72 km/h
    slow = features(track(kmh=72.0 / 1.4), Events(), usual)
    assert slow["pace_ratio"] == pytest.approx(math.log2(1.4), abs=0.02)
    # A rest at a parking is no delay.
    rested = features(track(stop=(20, 30), permitted=True), Events(), usual)
    assert rested["pace_ratio"] == pytest.approx(0.0, abs=0.02)


def test_events_and_history_are_features_as_given() -> None:
    ev = Events(rendezvous=1, seal_events=3, alerts=4, trader_incidents=5)
    got = features(track(), ev, None)
    assert (got["rendezvous"], got["seal_events"]) == (1, 3)
    assert (got["alerts"], got["trader_incidents"], got["vehicle_incidents"]) == (4, 5, 0)


@pytest.mark.parametrize(
    "shape",
    [
        {"stop": (20, 13)},
        {"stop": (20, 13), "t0": NIGHT_T0},
        {"stop": (20, 13), "permitted": True},
        {"stop": (50, 12)},  # a stop under way at the newest fix
        {"gap": (30, 100)},
        {"gap": (10, 40), "stop": (30, 4)},
        {"kmh": 40.0, "minutes": 45.0},
    ],
)
def test_features_kept_fix_by_fix_equal_those_of_the_whole_track(shape) -> None:
    whole = track(**shape)
    th = Thresholds()
    events = Events(rendezvous=1, alerts=2, vehicle_incidents=1)
    want = features(whole, events, 50.0, th)
    rows = list(
        zip(
            whole.seconds.tolist(),
            whole.lons.tolist(),
            whole.lats.tolist(),
            [None if math.isnan(v) else v for v in whole.speeds.tolist()],
            whole.permitted.tolist(),
            strict=True,
        )
    )
    for chunk in (1, 3, 7, 1000):
        running = Running()
        for i in range(0, len(rows), chunk):
            running = Running.from_json(json.loads(json.dumps(running.to_json())))
            running.add(rows[i : i + chunk], th)
        running.add(rows[-5:], th)  # a redelivery adds nothing
        got = running.features(events, 50.0, th)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), chunk
    assert Running().features(Events(), None, th) == dict.fromkeys(FEATURES, 0.0)


def test_accumulators_of_another_layout_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="layout 7"):
        Running.from_json({"v": 7})
    with pytest.raises(ValueError, match="bogus"):
        Running.from_json({"v": 1, "bogus": 1})


def _fitted(seed: int = 0) -> RiskModel:
    clean = features(track(stop=(20, 2)), Events(), 50.0)
    rows, labels = [], []
    for k in range(40):
        covert = k % 4 == 0
        t = track(stop=(10 + k % 7, 13 if covert else 1 + k % 3), gap=(40, 100 if covert else 30))
        rows.append(features(t, Events(vehicle_incidents=k % 3), 50.0))
        labels.append(int(covert))
    rows.append(clean)
    labels.append(0)
    return fit(rows, labels, seed=seed)


def test_reasons_add_up_to_the_logit_and_the_probability() -> None:
    model = _fitted()
    s = model.score(features(track(stop=(20, 13), gap=(40, 100)), Events(alerts=1), 50.0))
    assert {r.feature for r in s.reasons} == set(FEATURES)
    assert s.intercept + math.fsum(r.contribution for r in s.reasons) == pytest.approx(s.logit)
    assert s.probability == pytest.approx(1 / (1 + math.exp(-s.logit)))
    sizes = [abs(r.contribution) for r in s.reasons]
    assert sizes == sorted(sizes, reverse=True)
    for r in s.reasons:
        i = model.features.index(r.feature)
        z = (r.value - model.means[i]) / model.scales[i]
        assert r.contribution == pytest.approx(r.weight * z)
    clean = model.score(features(track(stop=(20, 1)), Events(), 50.0))
    assert s.probability > 0.5 > clean.probability


def test_a_model_round_trips_through_json_and_its_fit_is_deterministic() -> None:
    model = _fitted(seed=7)
    text = json.dumps(model.to_json())
    back = RiskModel.from_json(json.loads(text))
    assert back == model
    x = features(track(stop=(20, 13)), Events(), 50.0)
    assert back.score(x) == model.score(x)
    assert _fitted(seed=7).to_json() == model.to_json()
    with pytest.raises(ValueError, match="layout"):
        RiskModel.from_json({**model.to_json(), "v": 99})


def test_a_stored_model_with_a_retired_feature_scores_the_same_without_its_reason() -> None:
    # A model stored before near_rendezvous left FEATURES: the system gives it 0.
    model = _fitted(seed=7)
    data = model.to_json()
    for key, extra in (("features", "near_rendezvous"), ("means", 0.3), ("scales", 0.5)):
        data[key] = [*data[key][:7], extra, *data[key][7:]]
    data["coefficients"] = [*data["coefficients"][:7], -0.4, *data["coefficients"][7:]]
    old = RiskModel.from_json(data)
    assert "near_rendezvous" in old.features and model.over(FEATURES) is model
    now = old.over(FEATURES)
    assert now.features == FEATURES
    x = features(track(stop=(20, 13), gap=(40, 100)), Events(alerts=1), 50.0)
    before, after = old.score(x), now.score(x)
    assert after.logit == pytest.approx(before.logit) and after.level == before.level
    assert "near_rendezvous" in {r.feature for r in before.reasons}
    assert {r.feature for r in after.reasons} == set(FEATURES)
    assert after.intercept == pytest.approx(before.intercept + 0.4 * 0.3 / 0.5)


@pytest.mark.timeout(240)
def test_a_small_bench_run_ranks_covert_transits_above_clean_ones(capsys) -> None:
    r = run(transits=60, covert_share=0.2, seed=3)
    with capsys.disabled():
        figures = ("roc_auc", "precision_top10", "covert_in_top10", "clean_alerts")
        print("\nbench risk, 60 transits, seed 3:", {k: r[k] for k in figures})
    assert r["transits"] == 60 and r["covert"] >= 12
    assert {"roc_auc", "precision_top5", "precision_top10", "covert_in_top10"} <= set(r)
    assert 0.0 <= r["precision_top5"] <= 1.0 and 0.0 <= r["covert_in_top10"] <= 1.0
    assert r["roc_auc"] > 0.5
    assert r["clean_alerts"] == 0, r["clean_alert_types"]
    assert RiskModel.from_json(r["model"]).features == FEATURES
    reasons = r["top_transit"]["reasons"]
    assert len(reasons) == len(FEATURES) and all("weight" in x for x in reasons)
