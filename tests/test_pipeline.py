"""The ingest pipeline's pure part: signatures, unknown devices, dead letters."""

import json

from transit.devices import payload as wire
from transit.ingest.pipeline import Pipeline, RawMessage

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

    from transit.db.store import ActiveTransit
    from transit.geofence.corridor import acts_network, load_geojson
    from transit.geofence.engine import GeofenceEngine
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
