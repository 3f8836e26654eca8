"""The rendezvous rule as the watchdog runs it: over the newest stored fix of every
transit under way, with its episodes kept in the database, so that the process that
takes the lease over goes on where the last one stopped (transit/ingest/meetings.py).
On the real database, in a transaction rolled back after each test."""

from __future__ import annotations

from datetime import timedelta

from transit import bootstrap
from transit.db import alerts, devices, store, transits
from transit.geofence.corridor import acts_network
from transit.ingest.meetings import Meetings
from transit.ingest.storage import load_pipeline
from transit.model import Fix, make_mrn
from transit.provision import import_geojson

# On the MY-TH corridor, far from any office: A and B 22 m apart, C 1.1 km away.
PLACES = {"A": (101.5180, 3.685), "B": (101.5182, 3.685), "C": (101.5280, 3.685)}


def _fleet(tx) -> dict[str, str]:
    import_geojson(tx, acts_network())
    mrns = {}
    for i, name in enumerate(PLACES):
        device = f"TEST-RDV-{name}"
        mrn = make_mrn(26, "MY", f"RDVTX{i:07d}")
        devices.register(tx, device, "tracker")
        transits.declare(
            tx,
            mrn=mrn,
            tracker_id=device,
            corridor_id="MY-TH-BKK",
            office_departure="MYKUL001",
            office_destination="THBKK001",
            countries=["MY", "TH"],
            time_limit=tx.execute("SELECT now() + interval '2 days'").fetchone()[0],
            status="in_transit",
        )
        transits.finish_other_transits(tx, device, mrn)
        mrns[device] = mrn
    return mrns


def _report(tx, at, seq: int, moved: dict[str, tuple[float, float]] | None = None) -> None:
    places = {**PLACES, **(moved or {})}
    fixes = [
        Fix(device_id=f"TEST-RDV-{n}", seq=seq, idx=0, time=at, lon=lon, lat=lat, speed_kmh=0.0)
        for n, (lon, lat) in places.items()
    ]
    store.write_batch(tx, fixes, [], [], [])


def _window(tx, meetings: Meetings, settings, now) -> list:
    pipeline = bootstrap.pipeline(settings)
    load_pipeline(tx, pipeline, None, "")
    met = meetings.run(tx, pipeline, now)
    store.write_batch(tx, [], [], [], met)
    return met


def test_two_trucks_stopped_together_raise_a_rendezvous_on_both_naming_each_other(
    tx, settings
) -> None:
    quick = settings.model_copy(update={"rendezvous_s": 30.0})
    store.create_staging(tx)
    mrns = _fleet(tx)
    now = tx.execute("SELECT now()").fetchone()[0]
    t0 = now - timedelta(seconds=60)
    _report(tx, t0, 1)
    assert _window(tx, Meetings(quick), quick, t0 + timedelta(seconds=1)) == []
    # The lease moves to another process: it reads the episodes back and goes on.
    _report(tx, now - timedelta(seconds=10), 2)
    met = _window(tx, Meetings(quick), quick, now)
    assert sorted((e.device_id, e.action, e.details["other_device"]) for e in met) == [
        ("TEST-RDV-A", "open", "TEST-RDV-B"),
        ("TEST-RDV-B", "open", "TEST-RDV-A"),
    ]
    rows = tx.execute(
        "SELECT mrn, details->>'other_mrn', (details->>'duration_s')::int, cleared_at"
        " FROM alerts WHERE type = 'rendezvous' AND mrn = ANY(%s) ORDER BY device_id",
        (list(mrns.values()),),
    ).fetchall()
    a, b = mrns["TEST-RDV-A"], mrns["TEST-RDV-B"]
    assert [(r[0], r[1]) for r in rows] == [(a, b), (b, a)]
    assert all(r[2] == 50 and r[3] is None for r in rows)
    assert mrns["TEST-RDV-C"] not in {r[0] for r in rows}
    assert alerts.open_keys(tx) >= {(a, "rendezvous", f"TEST-RDV-B@{t0.isoformat()}")}


def test_a_short_stop_together_raises_nothing_and_parting_clears_the_alert(tx, settings) -> None:
    quick = settings.model_copy(update={"rendezvous_s": 30.0})
    store.create_staging(tx)
    mrns = _fleet(tx)
    now = tx.execute("SELECT now()").fetchone()[0]
    meetings = Meetings(quick)
    _report(tx, now - timedelta(seconds=80), 1)
    _window(tx, meetings, quick, now - timedelta(seconds=79))
    _report(tx, now - timedelta(seconds=60), 2)  # 20 s together: under the limit
    assert _window(tx, meetings, quick, now - timedelta(seconds=59)) == []
    _report(tx, now - timedelta(seconds=40), 3)  # 40 s: a rendezvous
    assert len(_window(tx, meetings, quick, now - timedelta(seconds=39))) == 2
    _report(tx, now - timedelta(seconds=10), 4, {"B": (101.5300, 3.690)})  # B drives off
    parted = _window(tx, meetings, quick, now)
    assert sorted({e.action for e in parted}) == ["clear", "evidence"]
    cleared = tx.execute(
        "SELECT count(*) FROM alerts WHERE type = 'rendezvous' AND mrn = ANY(%s)"
        " AND cleared_at IS NOT NULL",
        (list(mrns.values()),),
    ).fetchone()[0]
    assert cleared == 2
