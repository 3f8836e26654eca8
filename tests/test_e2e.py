"""End to end: simulator -> Mosquitto -> ingest -> TimescaleDB -> HTTP API."""

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from firmware_sim.fleet import Fleet
from firmware_sim.scenario import fleet_plan
from firmware_sim.truck import Incident
from transit.geofence.corridor import acts_network
from transit.ingest.worker import IngestWorker, WorkerConfig
from transit.provision import import_geojson, provision_fleet, sync_broker

SEED = 77


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_simulated_deviation_and_seal_cut_are_readable_through_the_api(settings, db, api_url):
    network = acts_network()
    plans = fleet_plan(network, 8, seed=SEED)  # truck 3 detours at 20 s, truck 7 cuts a seal
    # Flaky modem and firmware on clean trucks: each message twice, a stretch out of
    # order, a reboot with its backlog uploaded later. Still exactly one row per fix.
    plans[5].incidents += [Incident("duplicate", 0), Incident("reorder", 50, 60)]
    plans[6].incidents += [Incident("reboot", 40, 50)]
    import_geojson(db, network)
    db.execute("DELETE FROM alerts WHERE mrn = ANY(%s)", ([p.mrn for p in plans],))
    db.execute("DELETE FROM fixes WHERE device_id = ANY(%s)", ([p.device_id for p in plans],))
    db.commit()
    provision_fleet(db, plans)
    sync_broker(db, settings)
    time.sleep(0.5)

    worker = IngestWorker(settings, WorkerConfig(client_id="transit-ingest-0"))
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    fleet = Fleet(settings, [p.truck(i) for i, p in enumerate(plans)], realtime=False)
    fleet.connect()
    try:
        fleet.run(steps=20, start=datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
        # Every fix once: as many rows as distinct fix times, 20 for every truck.
        expected = {p.device_id: (20, 20) for p in plans}
        deadline = time.monotonic() + 30
        counts: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            rows = db.execute(
                "SELECT device_id, count(*), count(DISTINCT time) FROM fixes"
                " WHERE device_id = ANY(%s) GROUP BY 1",
                ([p.device_id for p in plans],),
            ).fetchall()
            counts = {r[0]: (r[1], r[2]) for r in rows}
            db.commit()
            if counts == expected:
                break
            time.sleep(0.2)
        assert counts == expected
    finally:
        fleet.close()
        worker.stop()
        runner.join(10)

    detour, cut = plans[3], plans[7]
    dev = _get(f"{api_url}/api/v1/alerts?mrn={detour.mrn}")
    assert [a["type"] for a in dev["items"]] == ["route_deviation"]
    assert dev["items"][0]["details"]["distance_m"] > 750
    seal = _get(f"{api_url}/api/v1/alerts?mrn={cut.mrn}")
    assert [a["type"] for a in seal["items"]] == ["seal_tampered"]
    clean = [p.mrn for i, p in enumerate(plans) if i not in (3, 7)]
    for mrn in clean:
        assert _get(f"{api_url}/api/v1/alerts?mrn={mrn}")["count"] == 0, mrn

    transit = _get(f"{api_url}/api/v1/transits/{detour.mrn}")
    assert transit["status"] == "in_transit" and transit["open_alerts"] == 1
    track = _get(f"{api_url}/api/v1/transits/{detour.mrn}/track")
    line = track["features"][0]["geometry"]
    assert line["type"] == "LineString" and len(line["coordinates"]) == 20


def test_api_refuses_a_malformed_mrn_with_a_reason(api_url):
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{api_url}/api/v1/transits/NOT-AN-MRN", timeout=10)
    assert exc.value.code == 422
    body = json.load(exc.value)
    assert body["detail"][0]["loc"] == ["path", "mrn"]
