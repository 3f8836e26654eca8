"""docs/protocol.md's examples are real: each one decodes as the text says."""

import re
import subprocess
from pathlib import Path

from transit.devices import payload as wire
from transit.devices.eseal import SealFrame, SealFrameDecoder

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


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


def _shell_blocks() -> tuple[str, str]:
    """The signature example's assignments (KEY, T, P, SIG) and the envelope block."""
    blocks = re.findall(r"```\n(KEY=.*?|B=.*?)```", DOC, re.S)
    signed, enveloped = blocks
    assignments = "\n".join(ln for ln in signed.splitlines() if re.match(r"^(KEY|T|P|SIG)=", ln))
    return assignments, enveloped


def test_envelope_example_matches_openssl_and_transit() -> None:
    assignments, enveloped = _shell_blocks()
    documented = re.search(r"^# E = (\{.*\})$", enveloped, re.M).group(1)
    # The doc's own commands (openssl for the HMAC and the base64), up to the publish.
    commands = "\n".join(ln for ln in enveloped.splitlines() if ln.startswith(("B=", "E=")))
    out = subprocess.run(
        ["bash", "-euc", assignments + "\n" + commands + '\nprintf "%s" "$E"'],
        capture_output=True,
        check=True,
        text=True,
    )
    assert out.stdout == documented
    topic = "transit/v1/devices/TRK0100001/telemetry"
    payload = re.search(r"^P='(.*)'$", DOC, re.M).group(1).encode()
    assert wire.envelope(bytes(range(32)), topic, payload).decode() == documented
    opened = wire.open_message(documented.encode())
    assert opened.envelope and opened.body == payload
    wire.verify(bytes(range(32)), topic, opened.body, opened.sig)


def test_mosquitto_pub_mqttv311_example_is_stored_as_written(settings, db, ingest) -> None:
    """The envelope block run as written, with the test's device, broker and password
    put in: the message goes through the real broker and ingest into the database."""
    import os
    import secrets
    import time

    from transit.broker import device_password
    from transit.db import devices
    from transit.provision import sync_broker

    dev = f"DOC{secrets.token_hex(4).upper()}"
    devices.register(db, dev, "tracker", bytes(range(32)))  # the doc's key
    db.commit()
    sync_broker(db, settings)
    time.sleep(0.5)
    assignments, enveloped = _shell_blocks()
    assert "mosquitto_pub -V mqttv311 " in enveloped
    script = (
        (assignments + "\n" + enveloped)
        .replace("TRK0100001", dev)
        .replace("-h BROKER -p 1883", f"-h {settings.mqtt_host} -p {settings.mqtt_port}")
    )
    env = {**os.environ, "PASSWORD": device_password(settings.device_secret, dev)}
    subprocess.run(["bash", "-euc", script], env=env, check=True, timeout=30)

    payload = re.search(r"^P='(.*)'$", DOC, re.M).group(1).encode()
    deadline = time.monotonic() + 30
    kept: list = []
    while time.monotonic() < deadline and not kept:
        kept = db.execute(
            "SELECT seq, payload, envelope FROM raw_messages WHERE device_id = %s", (dev,)
        ).fetchall()
        db.commit()
        time.sleep(0.2)
    assert [(s, bytes(p), e) for s, p, e in kept] == [(42, payload, True)]
    # Its fix is kept: among the fixes, or set apart while its time is ahead of the clock.
    (n,) = db.execute(
        "SELECT (SELECT count(*) FROM fixes WHERE device_id = %s)"
        " + (SELECT count(*) FROM filtered_fixes WHERE device_id = %s)",
        (dev, dev),
    ).fetchone()
    assert n == 1
    letters = db.execute(
        "SELECT count(*) FROM dead_letters WHERE topic LIKE %s", (f"%/{dev}/%",)
    ).fetchone()
    assert letters == (0,)
