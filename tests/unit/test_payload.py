import json

import pytest

from transit.devices import payload as wire

TOPIC = "transit/v1/devices/TRK1/telemetry"
GOOD = {"v": 1, "seq": 7, "fixes": [{"t": "2026-11-23T01:02:03Z", "lat": 3.1, "lon": 101.6}]}


def test_valid_telemetry_decodes_to_fixes() -> None:
    device_id, msg = wire.decode(TOPIC, json.dumps(GOOD).encode())
    assert device_id == "TRK1"
    assert isinstance(msg, wire.TelemetryV1)
    fixes = wire.fixes_of(device_id, msg)
    assert [(f.seq, f.idx, f.lat, f.lon) for f in fixes] == [(7, 0, 3.1, 101.6)]


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "names"),
    [
        (TOPIC, b"{not json", "not_json", "Expecting"),
        (TOPIC, b"[1, 2]", "schema", "JSON object"),
        (TOPIC, json.dumps({**GOOD, "v": 2}).encode(), "schema", "v"),
        (
            TOPIC,
            json.dumps({**GOOD, "fixes": [{"t": "x", "lat": 1, "lon": 1}]}).encode(),
            "schema",
            "fixes.0.t",
        ),
        (
            TOPIC,
            json.dumps(
                {**GOOD, "fixes": [{"t": "2026-11-23T01:02:03Z", "lat": float("nan"), "lon": 1}]}
            ).encode(),
            "schema",
            "fixes.0.lat",
        ),
        (TOPIC, json.dumps({**GOOD, "extra": 1}).encode(), "schema", "extra"),
        ("transit/v1/devices/TRK1/bogus", b"{}", "bad_topic", "bogus"),
        ("other/topic", b"{}", "bad_topic", "other/topic"),
        (TOPIC, b" " * (wire.MAX_PAYLOAD_BYTES + 1), "too_large", "bytes"),
    ],
)
def test_bad_messages_are_refused_with_a_reason_that_names_the_problem(
    topic: str, payload: bytes, reason: str, names: str
) -> None:
    with pytest.raises(wire.PayloadError) as exc:
        wire.decode(topic, payload)
    assert exc.value.reason == reason
    assert names in exc.value.detail


def test_a_fix_out_of_range_decodes_for_the_filters_to_keep_apart() -> None:
    # One bad fix must not refuse a backlog of good ones: the ingest filters keep it.
    body = {**GOOD, "fixes": [*GOOD["fixes"], {"t": "2026-11-23T01:02:04Z", "lat": 91, "lon": 1}]}
    device_id, msg = wire.decode(TOPIC, json.dumps(body).encode())
    assert [(f.lat, f.lon) for f in wire.fixes_of(device_id, msg)] == [(3.1, 101.6), (91, 1)]


def test_encode_then_decode_round_trips() -> None:
    _, msg = wire.decode(TOPIC, json.dumps(GOOD).encode())
    assert wire.decode(TOPIC, wire.encode(msg))[1] == msg
