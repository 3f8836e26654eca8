"""The signed envelope (MQTT 3.1.1 devices) in the pure pipeline: accepted beside the
user property, bound to its topic, refused with a reason when forged or malformed;
every accepted message kept as signed."""

import base64
import json

import pytest

from transit.devices import payload as wire
from transit.ingest.pipeline import Pipeline, RawMessage

KEY = bytes(range(32))
TOPIC = "transit/v1/devices/SIGNED1/telemetry"
BODY = json.dumps(
    {"v": 1, "seq": 7, "fixes": [{"t": "2026-11-23T01:00:00Z", "lat": 1.0, "lon": 103.8}]}
).encode()


def _pipeline() -> Pipeline:
    p = Pipeline()
    p.devices = {"SIGNED1": KEY, "SIGNED2": KEY, "PLAIN1": None}
    return p


def _envelope(fields: dict) -> bytes:
    return json.dumps(fields).encode()


def test_an_envelope_opens_to_the_exact_signed_bytes_and_signature() -> None:
    env = wire.envelope(KEY, TOPIC, BODY)
    opened = wire.open_message(env)
    assert (opened.body, opened.sig, opened.envelope) == (BODY, wire.sign(KEY, TOPIC, BODY), True)
    # Field order and spacing of the envelope are free: only the body is signed.
    doc = json.loads(env)
    spaced = json.dumps({"body": doc["body"], "sig": doc["sig"], "alg": doc["alg"]}, indent=2)
    assert wire.open_message(spaced.encode()) == opened
    # A plain message is its own body, signed (or not) by the user property.
    assert wire.open_message(BODY, "ab") == wire.Opened(BODY, "ab", False)


def test_an_enveloped_message_is_accepted_and_kept_as_signed() -> None:
    out = _pipeline().process([RawMessage(TOPIC, wire.envelope(KEY, TOPIC, BODY))])
    assert (len(out.fixes), out.dead_letters) == (1, [])
    (kept,) = out.messages
    assert (kept.device_id, kept.seq, kept.topic, kept.body, kept.envelope) == (
        "SIGNED1",
        7,
        TOPIC,
        BODY,
        True,
    )
    assert kept.sig == wire.sign(KEY, TOPIC, BODY)
    assert kept.time == out.fixes[0].time


def test_a_message_signed_by_user_property_is_kept_too_and_a_status_is_not() -> None:
    status_topic = "transit/v1/devices/SIGNED1/status"
    out = _pipeline().process(
        [
            RawMessage(TOPIC, BODY, wire.sign(KEY, TOPIC, BODY)),
            RawMessage(status_topic, b'{"v":1,"state":"online"}'),
        ]
    )
    assert [(m.body, m.envelope) for m in out.messages] == [(BODY, False)]


def test_forged_moved_and_unsigned_envelopes_are_dead_lettered_with_the_reason() -> None:
    env = json.loads(wire.envelope(KEY, TOPIC, BODY))
    forged_body = BODY.replace(b"103.8", b"104.9")
    forged = _envelope({**env, "body": base64.b64encode(forged_body).decode()})
    moved = "transit/v1/devices/SIGNED2/telemetry"  # another device's topic
    out = _pipeline().process(
        [
            RawMessage(TOPIC, forged),
            RawMessage(moved, wire.envelope(KEY, TOPIC, BODY)),
            RawMessage(TOPIC, wire.envelope(b"another key", TOPIC, BODY)),
            RawMessage(TOPIC, _envelope({"alg": "HMAC-SHA256", "body": env["body"]})),
        ]
    )
    assert out.fixes == [] and out.messages == []
    assert [d.reason for d in out.dead_letters] == [
        "bad_signature",
        "bad_signature",
        "bad_signature",
        "bad_envelope",
    ]
    # The dead letter keeps the bytes as published, and the signature they carried.
    assert out.dead_letters[0].raw == forged and out.dead_letters[0].sig == env["sig"]


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"alg": "HMAC-SHA1"}, "alg must be"),
        ({"extra": 1}, "alg, sig and body only"),
        ({"sig": "zz"}, "64 hex digits"),
        ({"body": "not base64!"}, "not base64"),
        ({"body": 5}, "base64 string"),
    ],
)
def test_a_malformed_envelope_is_refused_as_bad_envelope(fields: dict, detail: str) -> None:
    env = {**json.loads(wire.envelope(KEY, TOPIC, BODY)), **fields}
    with pytest.raises(wire.PayloadError) as exc:
        wire.open_message(_envelope(env))
    assert exc.value.reason == "bad_envelope" and detail in exc.value.detail


def test_a_replayed_envelope_is_the_same_message_with_the_same_seq() -> None:
    env = wire.envelope(KEY, TOPIC, BODY)
    out = _pipeline().process([RawMessage(TOPIC, env), RawMessage(TOPIC, env)])
    # Both accepted here; the store writes (device, seq) once
    # (tests/integration/test_raw_messages.py).
    assert {(m.device_id, m.seq) for m in out.messages} == {("SIGNED1", 7)}


def test_a_device_without_a_key_may_send_an_envelope_unverified() -> None:
    topic = "transit/v1/devices/PLAIN1/telemetry"
    out = _pipeline().process([RawMessage(topic, wire.envelope(b"whatever", topic, BODY))])
    assert len(out.fixes) == 1 and out.messages[0].envelope


def test_a_time_without_its_offset_is_refused_as_schema() -> None:
    naive = BODY.replace(b"01:00:00Z", b"01:00:00")
    out = _pipeline().process([RawMessage(TOPIC, naive, wire.sign(KEY, TOPIC, naive))])
    assert [d.reason for d in out.dead_letters] == ["schema"]
    assert "timezone" in out.dead_letters[0].detail
