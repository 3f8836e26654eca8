"""The risk score where people see it, on the real database and API: ingest updates a
transit's score as its fixes arrive; the API sorts and filters transits by risk and
shows a transit's score with its reasons (a partner's scoped); the exit officer closes
with an inspection, kept and audited, which counts in the next transit's history; the
country entered gets the score in its crossing notice. The telemetry goes through
ingest's own transaction (tests/risk_world.py)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests import risk_world as world
from tests.http import call
from transit import keys
from transit.db import partners
from transit.db import risk as risk_rows
from transit.db.visibility import PARTNER_WITHHELD_REASONS


def _score(conn: Any, mrn: str) -> tuple[float, str] | None:
    found = conn.execute(
        "SELECT probability, level FROM transit_risk WHERE mrn = %s", (mrn,)
    ).fetchone()
    return (float(found[0]), str(found[1])) if found else None


def test_ingest_updates_a_transits_score_as_its_fixes_arrive(tx, settings) -> None:
    token = secrets.token_hex(3).upper()
    made = world.declare(tx, token, [world.COVERT, world.CLEAN])
    now = tx.execute("SELECT now()").fetchone()[0]
    t0 = now - timedelta(minutes=80)
    by_device = {
        made[p.name][1]: world.messages(made[p.name][1], world.fixes(p, t0))
        for p in (world.COVERT, world.CLEAN)
    }
    covert, clean = made["covert"][0], made["clean"][0]
    seen: list[tuple[float, float]] = []
    for k in world.drive(tx, settings, by_device, now, commit=False):
        if k % 10 == 9:  # each 5 minutes of event time, the first before any stop
            seen.append((_score(tx, covert)[0], _score(tx, clean)[0]))
    # The covert truck's score climbs with each stop near the limit; the clean one stays low.
    assert seen[0][0] < 0.4 < seen[-1][0]
    assert _score(tx, covert)[1] == "high"
    assert all(c < 0.4 for _, c in seen)
    feats = tx.execute("SELECT features FROM transit_risk WHERE mrn = %s", (covert,)).fetchone()[0]
    assert feats["stops_near_limit"] == 3
    assert feats["gaps_near_limit"] == 1
    # A batch delivered again changes nothing.
    before = tx.execute("SELECT running FROM transit_risk WHERE mrn = %s", (covert,)).fetchone()
    list(
        world.drive(
            tx, settings, {made["covert"][1]: by_device[made["covert"][1]][-5:]}, now, False
        )
    )
    after = tx.execute("SELECT running FROM transit_risk WHERE mrn = %s", (covert,)).fetchone()
    assert before == after


def test_the_country_entered_gets_the_score_scoped_in_its_crossing_notice(tx, settings) -> None:
    token = secrets.token_hex(3).upper()
    partners.put(tx, "TH", "http://127.0.0.1:9/never", b"secret")
    made = world.declare(tx, token, [world.COVERT], trader="TIN-RSK")
    now = tx.execute("SELECT now()").fetchone()[0]
    mrn, tracker = made["covert"]
    msgs = world.messages(tracker, world.fixes(world.COVERT, now - timedelta(minutes=80)))
    list(world.drive(tx, settings, {tracker: msgs}, now, commit=False))
    notice = tx.execute(
        "SELECT payload FROM webhook_outbox WHERE mrn = %s AND event = 'crossing'", (mrn,)
    ).fetchone()[0]
    assert notice["to"] == "TH"
    assert notice["risk"]["level"] == "high"
    features = [r["feature"] for r in notice["risk"]["reasons"]]
    assert "stops_near_limit" in features and "withheld" in features
    assert not set(features) & set(PARTNER_WITHHELD_REASONS)


@pytest.fixture(scope="module")
def scored(settings, api_module) -> Any:
    """A covert and a clean transit scored by ingest (committed, seen by the API), and
    a key per role. Closed after the module."""
    token = secrets.token_hex(3).upper()
    with psycopg.connect(settings.database_url) as conn:
        made = world.declare(conn, token, [world.COVERT, world.CLEAN], trader=f"TIN-{token}")
        now = conn.execute("SELECT now()").fetchone()[0]
        by_device = {
            made[p.name][1]: world.messages(
                made[p.name][1], world.fixes(p, now - timedelta(minutes=80))
            )
            for p in (world.COVERT, world.CLEAN)
        }
        conn.commit()
        list(world.drive(conn, settings, by_device, now, commit=True))
        keyed = {
            "control_room": keys.create(conn, "control_room", label="risk"),
            "partner_th": keys.create(conn, "partner", country="TH", label="risk"),
            "officer_bkk": keys.create(conn, "officer", office="THBKK001", label="risk"),
        }
        conn.commit()
    yield {"mrns": {k: v[0] for k, v in made.items()}, "keys": keyed, "url": api_module}
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE transits SET status = 'closed', closed_at = coalesce(closed_at, now())"
            " WHERE mrn = ANY(%s)",
            ([v[0] for v in made.values()],),
        )
        conn.commit()


def test_the_api_sorts_and_filters_transits_by_risk(scored) -> None:
    url, key = scored["url"], scored["keys"]["control_room"]
    covert, clean = scored["mrns"]["covert"], scored["mrns"]["clean"]
    status, body = call(f"{url}/api/v1/transits?sort=-risk&finished=false&limit=1000", key=key)
    assert status == 200
    order = [t["mrn"] for t in body["items"]]
    assert order.index(covert) < order.index(clean)
    probs = [t["risk"]["probability"] for t in body["items"] if t["risk"]]
    assert probs == sorted(probs, reverse=True)
    status, high = call(f"{url}/api/v1/transits?risk_level=high&limit=1000", key=key)
    assert {t["risk"]["level"] for t in high["items"]} == {"high"}
    assert covert in {t["mrn"] for t in high["items"]}
    assert clean not in {t["mrn"] for t in high["items"]}
    status, _ = call(f"{url}/api/v1/transits?sort=danger", key=key)
    assert status == 422


def test_the_detail_carries_the_score_and_its_reasons_a_partners_scoped(scored) -> None:
    url, covert = scored["url"], scored["mrns"]["covert"]
    _, full = call(f"{url}/api/v1/transits/{covert}", key=scored["keys"]["control_room"])
    risk = full["risk"]
    assert risk["level"] == "high" and risk["probability"] >= 0.8
    top = risk["reasons"][0]
    assert set(top) == {"feature", "value", "weight", "contribution"}
    assert {r["feature"] for r in risk["reasons"]} >= {"stops_near_limit", "alerts"}
    assert full["trader"].startswith("TIN-")
    _, seen = call(f"{url}/api/v1/transits/{covert}", key=scored["keys"]["partner_th"])
    features = {r["feature"] for r in seen["risk"]["reasons"]}
    assert "withheld" in features and not features & set(PARTNER_WITHHELD_REASONS)
    assert "trader" not in seen
    total = sum(r["contribution"] for r in seen["risk"]["reasons"])
    assert total == pytest.approx(sum(r["contribution"] for r in risk["reasons"]), abs=1e-3)


def test_an_exit_closure_records_the_inspection_and_feeds_the_history(scored, settings) -> None:
    url, officer = scored["url"], scored["keys"]["officer_bkk"]
    covert = scored["mrns"]["covert"]
    status, body = call(
        f"{url}/api/v1/transits/{covert}/close",
        "POST",
        officer,
        {"inspection": {"inspected": True, "found": False}},
    )
    assert status == 409  # the truck is not at the office, and nothing found: refused
    status, body = call(
        f"{url}/api/v1/transits/{covert}/close",
        "POST",
        officer,
        {"inspection": {"inspected": False, "found": True, "note": "x"}},
    )
    assert status == 422 and "inspected" in str(body)
    status, body = call(
        f"{url}/api/v1/transits/{covert}/close",
        "POST",
        officer,
        {"inspection": {"inspected": True, "found": True, "note": "two pallets missing"}},
    )
    assert status == 200, body
    assert body["status"] == "closed"
    with psycopg.connect(settings.database_url) as conn:
        kept = risk_rows.inspections(conn, covert)
        assert [(i["found"], i["level"], i["note"]) for i in kept] == [
            (True, "high", "two pallets missing")
        ]
        audited = conn.execute(
            "SELECT details->>'found', details->>'risk_level' FROM audit_log"
            " WHERE action = 'transit.inspected' AND subject = %s",
            (covert,),
        ).fetchall()
        assert audited == [("true", "high")]
        # The trader's next transit starts with this one in its history.
        trader = conn.execute(
            "SELECT details->>'trader' FROM transits WHERE mrn = %s", (covert,)
        ).fetchone()[0]
        token = secrets.token_hex(3).upper()
        nxt = world.declare(conn, token, [world.CLEAN], trader=trader)["clean"][0]
        assert risk_rows.history(conn, [nxt])[nxt]["trader_incidents"] == 1
        conn.rollback()


def test_a_model_is_trained_from_what_inspections_found_and_then_scores(tx, settings) -> None:
    token = secrets.token_hex(3).upper()
    import random

    from transit.services import risk as risk_service

    rng = random.Random(7)
    plans = [world.Plan(f"h{i}", 70.0) for i in range(24)]
    made = world.declare(tx, token, plans)
    with pytest.raises(ValueError, match="at least 100000"):
        risk_service.train(tx, min_each=100_000)
    earlier = risk_rows.labelled(tx)  # the shared database's history counts too
    found_before = sum(bool(r["found"]) for r in earlier)
    for i, (mrn, _) in enumerate(made.values()):
        found = i % 2 == 0
        feats = {"stops_near_limit": float(found) * 3 + rng.random(), "alerts": rng.random()}
        tx.execute(
            "INSERT INTO transit_risk (mrn, probability, level, reasons, features,"
            " model_version, running, history) VALUES (%s, 0, 'low', '[]', %s, 0, '{}', '{}')",
            (mrn, json.dumps(feats)),
        )
        tx.execute("UPDATE transits SET status = 'closed' WHERE mrn = %s", (mrn,))
        risk_rows.inspect(
            tx,
            mrn,
            inspected=True,
            found=found,
            note=None,
            office="THBKK001",
            actor="test",
            probability=None,
            level=None,
        )
    trained = risk_service.train(tx, min_each=10)
    assert trained["found"] == found_before + 12
    assert trained["clean"] == len(earlier) - found_before + 12
    version, model = risk_service.model_of(tx, trained["version"])
    assert version == trained["version"]
    assert model.score({"stops_near_limit": 3.5}).probability > 0.5
    assert model.score({"stops_near_limit": 0.0}).probability < 0.5


def test_a_risk_model_that_cannot_score_never_costs_ingest_its_batch(tx, settings) -> None:
    """A stored model of a layout this code does not know (a newer release's, in a
    rolling upgrade): the batch's fixes are stored, its scores are left as they were,
    and the failure is counted; the queue would otherwise hand the batch from worker to
    worker, each failing the same way."""
    from transit import bootstrap
    from transit.db import store
    from transit.ingest import transaction
    from transit.ingest.storage import load_pipeline

    token = secrets.token_hex(3).upper()
    made = world.declare(tx, token, [world.CLEAN])
    mrn, device = made["clean"]
    from transit.services import risk as risk_service

    risk_rows.add_model(tx, {"v": 99, "features": []}, {"note": "from a newer release"})
    # Models are cached by version; another test's rolled-back model may have had this one.
    risk_service._models.clear()
    now = tx.execute("SELECT now()").fetchone()[0]
    batch = world.messages(device, world.fixes(world.CLEAN, now - timedelta(minutes=30)))[:20]
    store.create_staging(tx)
    pipeline = bootstrap.pipeline(settings)
    load_pipeline(tx, pipeline, bootstrap.country_borders(), "")
    written = transaction.ingest(tx, pipeline, batch, now, "test-risk", commit=False)
    assert written.risk_errors == 1
    stored = tx.execute("SELECT count(*) FROM fixes WHERE device_id = %s", (device,)).fetchone()
    assert stored[0] == len(written.result.fixes) > 0
    assert _score(tx, mrn) is None  # no score made from a model that cannot score
