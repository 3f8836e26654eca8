"""docs/protocol.md's examples are real: each one decodes as the text says."""

import re
import subprocess
from pathlib import Path

from transit.devices import payload as wire
from transit.devices.eseal import SealFrame, SealFrameDecoder

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()


def test_hex_frame_examples_decode() -> None:
    blocks = re.findall(r"```\n(e5 5e[0-9a-f ]+)\n```", DOC)
    assert len(blocks) == 3
    plain = SealFrameDecoder()
    plain.receive_data(bytes.fromhex(blocks[0]) + bytes.fromhex(blocks[1]))
    assert [(f.seal_id, f.status.value, f.counter, f.lat) for f in plain.events()] == [
        ("ESL1-0000000123", "sealed", 5, 3.139),
        ("ESL1-0000000123", "tampered", 6, None),
    ]
    keyed = SealFrameDecoder({"ESL1-0000000123": bytes(range(16))})
    keyed.receive_data(bytes.fromhex(blocks[2]))
    (frame,) = keyed.events()
    assert isinstance(frame, SealFrame)
    assert (frame.status.value, frame.counter, frame.signed) == ("tampered", 6, True)


def test_mqtt_payload_examples_validate() -> None:
    examples = re.findall(r"-t (transit/v1/devices/\S+)(?: \\\n )? -m '(\{.*?\})'", DOC)
    assert len(examples) == 3
    for topic, payload in examples:
        wire.decode(topic, payload.encode())


def test_signature_example_matches_openssl_and_transit() -> None:
    topic = "transit/v1/devices/TRK0100001/telemetry"
    payload = re.search(r"^P='(.*)'$", DOC, re.M).group(1).encode()
    documented = re.search(r"# SIG = ([0-9a-f]{64})", DOC).group(1)
    assert wire.sign(bytes(range(32)), topic, payload) == documented
    out = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            "hexkey:" + bytes(range(32)).hex(),
            "-r",
        ],
        input=topic.encode() + b"\n" + payload,
        capture_output=True,
        check=True,
    )
    assert out.stdout.split()[0].decode() == documented
