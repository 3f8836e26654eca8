"""Bad fixes are filtered, not drawn: through the real broker, an ingest worker, the
database and the HTTP API; and the filtered store on the real TimescaleDB."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_sim.scenario import fleet_plan
from tests.conftest import put_under_way
from transit.db import devices, filtered, store
from transit.devices import payload as wire
from transit.geofence.corridor import acts_network
from transit.model import Fix, make_mrn
from transit.mqtt import make_client
from transit.rules.filters import FilteredFix


def _get(url: str, key: str | None = None):
    req = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return body.decode() if url.endswith("/metrics") else json.loads(body)


def _metric(text: str, reason: str, worker: str) -> float:
    name = "transit_ingest_filtered_fixes_total{"
    for ln in text.splitlines():
        if ln.startswith(name) and f'reason="{reason}"' in ln and f'worker="{worker}"' in ln:
            return float(ln.rsplit(" ", 1)[1])
    return 0.0


def test_bad_fixes_are_kept_apart_counted_and_neither_drawn_nor_ruled_on(
    settings, db, ingest, api_url, admin_key, close_transits
) -> None:
    token = secrets.token_hex(4).upper()
    base = next(
        p
        for p in fleet_plan(acts_network(), 6, seed=5, incidents=False, traffic=False)
        if p.corridor_id == "MY-TH-BKK"
    )
    plan = replace(base, device_id=f"FLT{token}", mrn=make_mrn(26, "MY", f"FLT{token}"))
    close_transits.append(plan.mrn)
    key = secrets.token_bytes(32)  # a signed tracker, as in the report
    devices.register(db, plan.device_id, "tracker", key)
    db.commit()
    put_under_way(db, settings, [plan])

    # Rounded up, not down: the last good fix must not fall before the declaration,
    # where the track starts.
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    truck = plan.truck(3)
    t0 = now - timedelta(seconds=390)  # the last good fix is taken now
    good = []
    for k in range(40):
        tel, _ = truck.step(t0 + timedelta(seconds=10 * k))
        good += tel.fixes

    def moved(i: int, **changes) -> wire.FixV1:
        return good[i].model_copy(update=changes)

    seq = int(time.time() * 1000)
    messages = [
        good[:10],
        [moved(10, lat=good[10].lat + 3.0)],  # 330 km off ten seconds later: a jump
        good[11:13],
        # A receiver without a position writes 0, 0 for 90 s: one message, with good
        # fixes after it.
        [moved(i, lat=0.0, lon=0.0) for i in range(13, 22)] + good[22:24],
        [moved(24, lat=91.5, lon=200.0), good[25]],  # out of range, and a good one
        [moved(i, hdop=25.0, lat=good[i].lat + 0.05) for i in range(26, 30)],  # poor hdop
        [moved(30, t=now + timedelta(days=1))],
        [moved(31, t=now + timedelta(days=365))],
        good[32:40],
    ]
    bad = {"jump": 1, "null_island": 9, "out_of_range": 1, "poor_accuracy": 4, "future": 2}
    stored = 40 - sum(bad.values())
    topic = wire.topic_for(plan.device_id, "telemetry")
    c = make_client(settings, settings.mqtt_admin_user, settings.mqtt_admin_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    try:
        for k, fixes in enumerate(messages):
            payload = wire.encode(wire.TelemetryV1(v=1, seq=seq + k, fixes=fixes))
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("sig", wire.sign(key, topic, payload))
            c.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()

    def counts() -> tuple[int, int]:
        row = db.execute(
            "SELECT (SELECT count(*) FROM fixes WHERE device_id = %s),"
            " (SELECT count(*) FROM filtered_fixes WHERE device_id = %s)",
            (plan.device_id, plan.device_id),
        ).fetchone()
        db.commit()
        return int(row[0]), int(row[1])

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and counts() != (stored, sum(bad.values())):
        time.sleep(0.2)
    assert counts() == (stored, sum(bad.values()))

    # Not drawn: the track holds exactly the good fixes.
    since = urllib.parse.quote(t0.isoformat())
    track = _get(f"{api_url}/api/v1/transits/{plan.mrn}/track?from={since}", admin_key)
    props = track["features"][0]["properties"]
    coords = track["features"][0]["geometry"]["coordinates"]
    believed = [f for f in good if f not in (good[10], good[24], *good[13:22], *good[26:32])]
    assert props["times"] == [f.t.isoformat() for f in believed]
    assert [0.0, 0.0] not in coords and all(-90 <= lat <= 90 for _, lat in coords)
    last = _get(f"{api_url}/api/v1/transits/{plan.mrn}", admin_key)["last_fix"]
    assert last["time"] == good[39].t.isoformat()  # not the fix of next year

    # Kept apart with their reasons, for the transit and for the device.
    kept = _get(f"{api_url}/api/v1/transits/{plan.mrn}/filtered-fixes", admin_key)
    assert kept["counts"] == bad
    future = _get(f"{api_url}/api/v1/transits/{plan.mrn}/filtered-fixes?reason=future", admin_key)
    assert sorted(f["time"] for f in future["fixes"]) == [
        (now + timedelta(days=1)).isoformat(),
        (now + timedelta(days=365)).isoformat(),
    ]
    assert all("ahead of the server clock" in f["detail"] for f in future["fixes"])
    by_device = _get(f"{api_url}/api/v1/devices/{plan.device_id}/filtered-fixes", admin_key)
    assert by_device["counts"] == bad and len(by_device["fixes"]) == sum(bad.values())

    # The rules saw none of them: the jump raised its alert, nothing else did (a fix at
    # 0, 0 or 5 km off with a poor hdop would be a deviation; a fix of next year would
    # have hidden every later one from the rules).
    alerts = _get(f"{api_url}/api/v1/alerts?mrn={plan.mrn}", admin_key)["items"]
    assert [a["type"] for a in alerts] == ["gps_jump"]

    # Counted, by reason, in /metrics.
    worker = ingest.config.client_id
    deadline = time.monotonic() + 15
    text = ""
    while time.monotonic() < deadline:
        text = _get(f"{api_url}/metrics")
        if all(_metric(text, r, worker) >= n for r, n in bad.items()):
            break
        time.sleep(0.3)
    assert {r: _metric(text, r, worker) >= n for r, n in bad.items()} == dict.fromkeys(bad, True)


def test_a_filtered_fix_is_kept_once_and_never_beside_its_stored_self(db) -> None:
    store.prepare_session(db)
    dev = f"FLTDB{secrets.token_hex(4).upper()}"
    devices.register(db, dev, "tracker")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    fix = Fix(device_id=dev, seq=7, idx=0, time=t, lat=0.0, lon=0.0)
    twice = [FilteredFix(fix, "null_island", "0, 0"), FilteredFix(fix, "null_island", "0, 0")]
    assert filtered.write_filtered(db, twice) == 1
    assert filtered.write_filtered(db, twice[:1]) == 0  # a redelivered message
    # A fix stored as believed is not kept apart as well (judged otherwise on redelivery).
    good = Fix(device_id=dev, seq=8, idx=0, time=t, lat=3.1, lon=101.6)
    store.write_batch(db, [good], [], [], [])
    assert filtered.write_filtered(db, [FilteredFix(good, "stale", "x")]) == 0
    rows = db.execute(
        "SELECT seq, reason FROM filtered_fixes WHERE device_id = %s", (dev,)
    ).fetchall()
    assert rows == [(7, "null_island")]
    db.rollback()


def test_each_devices_newest_stored_fix_only_moves_forward(db) -> None:
    store.prepare_session(db)
    dev = f"FLTNEW{secrets.token_hex(4).upper()}"
    devices.register(db, dev, "tracker")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    store.write_batch(db, [Fix(device_id=dev, seq=1, time=t, lat=3.1, lon=101.6)], [], [], [])
    older = Fix(device_id=dev, seq=2, time=t - timedelta(days=1), lat=3.1, lon=101.6)
    store.write_batch(db, [older], [], [], [])
    assert filtered.newest_fix_times(db)[dev] == t
    db.rollback()


def test_a_tracker_whose_fixes_are_all_filtered_is_not_heard(db) -> None:
    from transit.ingest.pipeline import Pipeline, RawMessage
    from transit.ingest.storage import write_result

    store.prepare_session(db)
    dev = f"FLTSIL{secrets.token_hex(4).upper()}"
    devices.register(db, dev, "tracker")
    p = Pipeline()
    p.devices = {dev: None}
    now = datetime.now(UTC)
    zeros = [wire.FixV1(t=now - timedelta(seconds=k), lat=0.0, lon=0.0) for k in range(3)]
    body = wire.encode(wire.TelemetryV1(v=1, seq=1, fixes=zeros))
    result = p.process([RawMessage(wire.topic_for(dev, "telemetry"), body)], now=now)
    write_result(db, result)
    row = db.execute(
        "SELECT last_seen, last_fix_time, (SELECT count(*) FROM filtered_fixes"
        " WHERE device_id = %s) FROM devices WHERE device_id = %s",
        (dev, dev),
    ).fetchone()
    assert row == (None, None, 3)  # the silence watchdog still finds it silent
    db.rollback()
