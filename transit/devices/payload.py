"""MQTT wire protocol v1: topics and JSON payloads as pydantic models.

Topics are ``transit/v1/devices/{device_id}/{kind}`` with kind one of
``telemetry``, ``seal``, ``status`` (uplink) and ``cmd`` (downlink). See
docs/protocol.md for the specification a device vendor follows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transit.model import Fix, SealEvent, SealStatus

TOPIC_PREFIX = "transit/v1/devices"
MAX_PAYLOAD_BYTES = 256 * 1024
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
UPLINK_KINDS = ("telemetry", "seal", "status")


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

    t: datetime
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
    t: datetime
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
    t: datetime | None = None


Uplink = TelemetryV1 | SealV1 | StatusV1
_MODELS: dict[str, type[TelemetryV1] | type[SealV1] | type[StatusV1]] = {
    "telemetry": TelemetryV1,
    "seal": SealV1,
    "status": StatusV1,
}


def sign(key: bytes, topic: str, payload: bytes) -> str:
    """The signature of a message: hex HMAC-SHA256 over ``topic``, a newline, and the payload.

    A device that holds a key sends it as the MQTT 5 user property ``sig``. The topic
    is covered, so a signed message cannot be replayed under another device's id or kind.
    """
    return hmac.new(key, topic.encode() + b"\n" + payload, hashlib.sha256).hexdigest()


def verify(key: bytes, topic: str, payload: bytes, sig: str | None) -> None:
    """Raise PayloadError unless ``sig`` is the right signature of the message."""
    if sig is None:
        raise PayloadError("unsigned", "this device holds a key: its messages must carry 'sig'")
    if not hmac.compare_digest(sign(key, topic, payload), sig.lower()):
        raise PayloadError("bad_signature", "HMAC-SHA256 of topic and payload does not match")


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
