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
