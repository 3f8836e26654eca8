"""MQTT wire protocol v1: topics and JSON payloads as pydantic models.

Topics are ``transit/v1/devices/{device_id}/{kind}`` with kind one of
``telemetry``, ``seal``, ``status`` (uplink) and ``cmd`` (downlink). See
docs/protocol.md for the specification a device vendor follows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from transit.model import Fix, SealEvent, SealStatus

TOPIC_PREFIX = "transit/v1/devices"
MAX_PAYLOAD_BYTES = 256 * 1024
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
UPLINK_KINDS = ("telemetry", "seal", "status")
ENVELOPE_ALG = "HMAC-SHA256"
# An envelope carries its body in base64: four bytes for every three, and a little more.
MAX_ENVELOPE_BYTES = 4 * -(-MAX_PAYLOAD_BYTES // 3) + 1024
_SIG_RE = re.compile(r"^[0-9A-Fa-f]{64}$")


class PayloadError(ValueError):
    """A message that cannot be accepted; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixV1(_Strict):
    """One GNSS fix inside a telemetry message. A position out of range is not a
    malformed message: the fix is kept apart by the ingest filters, the others stored."""

    t: AwareDatetime  # a time without its offset is refused (it cannot be stored)
    lat: Annotated[float, Field(allow_inf_nan=False)]
    lon: Annotated[float, Field(allow_inf_nan=False)]
    speed_kmh: Annotated[float, Field(ge=0, le=400)] | None = None
    course_deg: Annotated[float, Field(ge=0, lt=360)] | None = None
    hdop: Annotated[float, Field(ge=0)] | None = None
    sats: Annotated[int, Field(ge=0, le=255)] | None = None


class TelemetryV1(_Strict):
    """A tracker's telemetry: one or more fixes (a backlog is uploaded in batches)."""

    v: Literal[1]
    seq: Annotated[int, Field(ge=0, lt=2**63)]
    fixes: Annotated[list[FixV1], Field(min_length=1, max_length=500)]
    battery_pct: Annotated[float, Field(ge=0, le=100)] | None = None


class SealV1(_Strict):
    """A seal's report: status, event counter, battery, and where it was when it happened."""

    v: Literal[1]
    seq: Annotated[int, Field(ge=0, lt=2**63)]
    seal_id: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,8}-[A-Z0-9]{1,24}$")]
    t: AwareDatetime
    status: SealStatus
    counter: Annotated[int, Field(ge=0)] = 0
    battery_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


class StatusV1(_Strict):
    """A device's retained presence: ``online`` on connect, ``offline`` as its last will."""

    v: Literal[1]
    state: Literal["online", "offline"]
    fw: str | None = None
    t: AwareDatetime | None = None


Uplink = TelemetryV1 | SealV1 | StatusV1
_MODELS: dict[str, type[TelemetryV1] | type[SealV1] | type[StatusV1]] = {
    "telemetry": TelemetryV1,
    "seal": SealV1,
    "status": StatusV1,
}


def sign(key: bytes, topic: str, payload: bytes) -> str:
    """The signature of a message: hex HMAC-SHA256 over ``topic``, a newline, and the payload.

    A device that holds a key sends it as the MQTT 5 user property ``sig``, or in a
    signed envelope (:func:`envelope`). The topic is covered, so a signed message
    cannot be replayed under another device's id or kind.
    """
    return hmac.new(key, topic.encode() + b"\n" + payload, hashlib.sha256).hexdigest()


def verify(key: bytes, topic: str, payload: bytes, sig: str | None) -> None:
    """Raise PayloadError unless ``sig`` is the right signature of the message."""
    if sig is None:
        raise PayloadError("unsigned", "this device holds a key: its messages must carry 'sig'")
    if not hmac.compare_digest(sign(key, topic, payload), sig.lower()):
        raise PayloadError("bad_signature", "HMAC-SHA256 of topic and payload does not match")


@dataclass(frozen=True)
class Opened:
    """What a message says and how it is signed, however it came: ``body`` is the exact
    signed payload, ``sig`` its signature (None: unsigned), ``envelope`` whether the two
    came in a signed envelope (MQTT 3.1.1) rather than as payload and user property."""

    body: bytes
    sig: str | None
    envelope: bool = False


@dataclass(frozen=True)
class SignedMessage:
    """An accepted telemetry or seal message as its device signed it, kept so that
    anyone holding the device's key can verify it again: the topic, the exact signed
    bytes and the signature (None for a device without a key). ``time`` is the
    message's own (its first fix's, or the seal report's)."""

    device_id: str
    seq: int
    time: datetime
    topic: str
    body: bytes
    sig: str | None
    envelope: bool = False


def envelope(key: bytes, topic: str, body: bytes) -> bytes:
    """The signed envelope of ``body`` on ``topic``: what a device that cannot set MQTT 5
    user properties publishes. The signature is the one :func:`sign` gives, over the
    exact bytes the envelope carries in base64."""
    return (
        b'{"alg":"'
        + ENVELOPE_ALG.encode()
        + b'","sig":"'
        + sign(key, topic, body).encode()
        + b'","body":"'
        + base64.b64encode(body)
        + b'"}'
    )


def open_message(payload: bytes, sig: str | None = None) -> Opened:
    """The signed body and signature of a message as published: the envelope's when the
    payload is one, else the payload itself with ``sig`` (the MQTT 5 user property).

    Raises PayloadError (``too_large``, ``not_json``, ``bad_envelope``) for an envelope
    that cannot be opened. A plain v1 message never holds a ``body`` field, so only a
    payload that mentions one is parsed here."""
    if b'"body"' not in payload:
        return Opened(payload, sig)
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_ENVELOPE_BYTES}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("not_json", str(exc)) from None
    if not isinstance(doc, dict) or "body" not in doc:
        return Opened(payload, sig)
    if set(doc) != {"alg", "sig", "body"}:
        fields = ", ".join(sorted(set(doc) ^ {"alg", "sig", "body"}))
        raise PayloadError("bad_envelope", f"an envelope has alg, sig and body only: {fields}")
    if doc["alg"] != ENVELOPE_ALG:
        raise PayloadError("bad_envelope", f"alg must be {ENVELOPE_ALG!r}, not {doc['alg']!r}")
    if not isinstance(doc["sig"], str) or not _SIG_RE.match(doc["sig"]):
        raise PayloadError("bad_envelope", "sig must be 64 hex digits")
    if not isinstance(doc["body"], str):
        raise PayloadError("bad_envelope", "body must be a base64 string")
    try:
        body = base64.b64decode(doc["body"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("bad_envelope", f"body is not base64: {exc}") from None
    return Opened(body, doc["sig"], envelope=True)


def signed_message(
    device_id: str, topic: str, opened: Opened, model: Uplink
) -> SignedMessage | None:
    """The message to keep for a telemetry or seal ``model`` (a status has no ``seq``: None)."""
    if isinstance(model, TelemetryV1):
        when = model.fixes[0].t  # oldest first, as the protocol says
    elif isinstance(model, SealV1):
        when = model.t
    else:
        return None
    return SignedMessage(
        device_id, model.seq, when, topic, opened.body, opened.sig, opened.envelope
    )


def topic_for(device_id: str, kind: str) -> str:
    """The topic a device publishes ``kind`` on."""
    return f"{TOPIC_PREFIX}/{device_id}/{kind}"


def split_topic(topic: str) -> tuple[str, str]:
    """``(device_id, kind)`` of an uplink topic, or PayloadError('bad_topic')."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_PREFIX:
        raise PayloadError("bad_topic", f"not under {TOPIC_PREFIX}/<device_id>/<kind>: {topic!r}")
    device_id, kind = parts[3], parts[4]
    if not DEVICE_ID_RE.match(device_id):
        raise PayloadError("bad_topic", f"device id {device_id!r} is not allowed")
    if kind not in UPLINK_KINDS:
        raise PayloadError("bad_topic", f"unknown message kind {kind!r}")
    return device_id, kind


def decode(topic: str, payload: bytes) -> tuple[str, Uplink]:
    """Validate one uplink message. Returns ``(device_id, model)`` or raises PayloadError."""
    device_id, kind = split_topic(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise PayloadError("schema", f"payload must be a JSON object, not {type(doc).__name__}")
    try:
        return device_id, _MODELS[kind].model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise PayloadError("schema", f"{where}: {first['msg']}") from None


def encode(model: Uplink) -> bytes:
    """The JSON bytes of a message, as a device sends them."""
    return model.model_dump_json(exclude_none=True).encode()


def fixes_of(device_id: str, msg: TelemetryV1) -> list[Fix]:
    """The domain fixes carried by one telemetry message."""
    return [
        Fix(
            device_id=device_id,
            seq=msg.seq,
            idx=i,
            time=f.t,
            lat=f.lat,
            lon=f.lon,
            speed_kmh=f.speed_kmh,
            course_deg=f.course_deg,
            hdop=f.hdop,
        )
        for i, f in enumerate(msg.fixes)
    ]


def seal_event_of(device_id: str, msg: SealV1) -> SealEvent:
    """The domain seal event carried by one seal message."""
    return SealEvent(
        device_id=device_id,
        seq=msg.seq,
        seal_id=msg.seal_id,
        time=msg.t,
        status=msg.status,
        counter=msg.counter,
        battery_pct=msg.battery_pct,
        lat=msg.lat,
        lon=msg.lon,
    )
