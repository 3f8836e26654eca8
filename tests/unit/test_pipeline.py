"""The ingest pipeline's pure part: signatures, unknown devices, dead letters."""

import json
from datetime import UTC, datetime, timedelta

from transit.devices import payload as wire
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.types import ActiveTransit
from transit.model import AlertType

KEY = b"device-key-000000000000000000000"
TOPIC = "transit/v1/devices/SIGNED1/telemetry"
BODY = json.dumps(
    {"v": 1, "seq": 1, "fixes": [{"t": "2026-11-23T01:00:00Z", "lat": 1.0, "lon": 103.8}]}
).encode()


def _pipeline() -> Pipeline:
    p = Pipeline()
    p.devices = {"SIGNED1": KEY, "PLAIN1": None}
    return p


def test_signed_message_is_accepted() -> None:
    out = _pipeline().process([RawMessage(TOPIC, BODY, wire.sign(KEY, TOPIC, BODY))])
    assert (len(out.fixes), out.dead_letters) == (1, [])


def test_forged_unsigned_and_cross_topic_messages_are_dead_lettered() -> None:
    forged = BODY.replace(b"103.8", b"104.9")
    other_topic = "transit/v1/devices/SIGNED1/seal"
    out = _pipeline().process(
        [
            RawMessage(TOPIC, forged, wire.sign(KEY, TOPIC, BODY)),
            RawMessage(TOPIC, BODY, None),
            RawMessage(TOPIC, BODY, wire.sign(b"wrong key", TOPIC, BODY)),
            RawMessage(other_topic, BODY, wire.sign(KEY, TOPIC, BODY)),
        ]
    )
    assert out.fixes == []
    assert [d.reason for d in out.dead_letters] == [
        "bad_signature",
        "unsigned",
        "bad_signature",
        "bad_signature",
    ]
    assert out.dead_letters[0].raw == forged


def test_unknown_device_is_dead_lettered_and_the_rest_go_through() -> None:
    plain = "transit/v1/devices/PLAIN1/telemetry"
    out = _pipeline().process(
        [
            RawMessage("transit/v1/devices/STRANGER/telemetry", BODY),
            RawMessage(plain, b"\xff\xfe"),
            RawMessage(plain, BODY),
        ]
    )
    assert [d.reason for d in out.dead_letters] == ["unknown_device", "not_json"]
    assert [f.device_id for f in out.fixes] == ["PLAIN1"]


def test_pipeline_runs_movement_and_battery_rules_on_a_transit_under_way() -> None:
    from datetime import UTC, datetime, timedelta

    from transit.geofence.corridor import acts_network, load_geojson
    from transit.geofence.engine import GeofenceEngine
    from transit.ingest.types import ActiveTransit
    from transit.model import AlertType

    corridors, offices = load_geojson(acts_network())
    p = Pipeline(GeofenceEngine(corridors, offices))
    p.devices = {"TRKP": None}
    mrn = "26MYS001T0000003A2"
    p.set_transits(
        {
            "TRKP": ActiveTransit(
                mrn, "TRKP", "MY-TH-BKK", (), ("MY", "TH"), ("MYKUL001", "MYBKH001", "THBKK001")
            )
        },
        set(),
    )
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    topic = "transit/v1/devices/TRKP/telemetry"

    def msg(seq: int, s: int, lat: float, speed: float, battery: float) -> RawMessage:
        fix = {
            "t": (t0 + timedelta(seconds=s)).isoformat(),
            "lat": lat,
            "lon": 101.3040,
            "speed_kmh": speed,
        }
        return RawMessage(
            topic, json.dumps({"v": 1, "seq": seq, "fixes": [fix], "battery_pct": battery}).encode()
        )

    # Stopped south of Tapah (no office or parking there) for 20 minutes, battery running out.
    batch = [msg(i + 1, i * 60, 4.1412, 0.0, 40 - i * 2) for i in range(21)]
    kinds = [(a.type, a.action) for a in p.process(batch).alerts]
    assert (AlertType.UNAUTHORIZED_STOP, "open") in kinds
    assert (AlertType.LOW_BATTERY, "open") in kinds
    assert AlertType.ROUTE_DEVIATION not in {k for k, _ in kinds}


def _lifecycle_pipeline(status: str, time_limit=None):
    from transit.geofence.borders import default_path, load

    corridors, offices = load_geojson(acts_network())
    p = Pipeline(GeofenceEngine(corridors, offices, load(default_path())))
    p.devices = {"TRKL": None}
    mrn = "26MYS001T0000003A2"
    p.set_transits(
        {
            "TRKL": ActiveTransit(
                mrn,
                "TRKL",
                "MY-TH-BKK",
                (),
                ("MY", "TH"),
                ("MYKUL001", "MYBKH001", "THBKK001"),
                time_limit,
                {},
                status,
            )
        },
        set(),
    )
    return p


def _fixes(points, t0, speed=40.0):
    return [
        RawMessage(
            "transit/v1/devices/TRKL/telemetry",
            json.dumps(
                {
                    "v": 1,
                    "seq": i + 1,
                    "fixes": [
                        {
                            "t": (t0 + timedelta(seconds=10 * i)).isoformat(),
                            "lat": lat,
                            "lon": lon,
                            "speed_kmh": speed,
                        }
                    ],
                }
            ).encode(),
        )
        for i, (lon, lat) in enumerate(points)
    ]


def test_ingest_finds_departure_and_arrival() -> None:
    p = _lifecycle_pipeline("released")
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    # Still inside the departure office's zone: nothing; then out on the road.
    out = p.process(_fixes([(101.6869, 3.1390)], t0), now=t0)
    assert out.lifecycle == []
    # 8 km on, ten minutes later (a minute later would be a jump: filtered).
    t1 = t0 + timedelta(minutes=10)
    out = p.process(_fixes([(101.6500, 3.2000)], t1), now=t1)
    assert [e.action for e in out.lifecycle] == ["depart"]
    assert p.transits["TRKL"].status == "in_transit"
    # Stopped at the office of destination (in Thailand, so a border was crossed too).
    t2 = t0 + timedelta(hours=9)
    out = p.process(_fixes([(100.5018, 13.7563)], t2, speed=0.0), now=t2)
    assert [e.action for e in out.lifecycle] == ["cross", "arrive"]
    assert (out.lifecycle[0].details["from"], out.lifecycle[0].details["to"]) == ("MY", "TH")
    assert out.lifecycle[1].details["office"] == "THBKK001"
    assert p.transits["TRKL"].status == "arrived"


def test_the_watchdog_makes_a_late_transit_overdue_with_an_enquiry() -> None:
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    p = _lifecycle_pipeline("in_transit", time_limit=t0)
    changes: list = []
    alerts = p.tick(t0 + timedelta(minutes=1), changes)
    assert [a.type for a in alerts] == [AlertType.OVERDUE]
    assert [c.action for c in changes] == ["overdue"]
    assert p.transits["TRKL"].status == "overdue"
    assert p.tick(t0 + timedelta(minutes=2), changes) == [] and len(changes) == 1


def test_a_restarted_worker_keeps_open_conditions_open() -> None:
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    p = _lifecycle_pipeline("in_transit")
    mrn = "26MYS001T0000003A2"
    key = t0.isoformat()
    # The database says the silence since t0 has an open alert: no second one.
    p.set_transits(dict(p.transits), {(mrn, AlertType.SIGNAL_LOST.value, key)})
    p.rules.clear()
    p.set_transits(dict(p.transits), {(mrn, AlertType.SIGNAL_LOST.value, key)})
    p.last_received = {"TRKL": t0}
    assert p.tick(t0 + timedelta(minutes=10)) == []
    # Without it in the database, the watchdog raises it.
    fresh = _lifecycle_pipeline("in_transit")
    fresh.last_received = {"TRKL": t0}
    assert [a.type for a in fresh.tick(t0 + timedelta(minutes=10))] == [AlertType.SIGNAL_LOST]
