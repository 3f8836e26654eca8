"""The e-seal binary frame (version 1), sans-IO: bytes in, frames out, and back.

After ISO 18185's data: a seal id made of a manufacturer id and a serial, the seal's
status (sealed, opened, tampered), an event counter, the battery, the seal's own
clock and, optionally, its last GNSS position; an optional truncated HMAC-SHA256 for
seals that hold a key. docs/protocol.md specifies the layout with hex examples.

    offset  size  field
    0       2     start marker E5 5E
    2       1     version (01)
    3       1     flags: bit 0 GNSS position present, bit 1 HMAC present
    4       2     body length L, big-endian
    6       L     body (see below)
    6+L     2     CRC-16/CCITT-FALSE of bytes 2 .. 6+L-1, big-endian

    body:  manufacturer (4 ASCII, A-Z 0-9) | serial u32 | status u8 | counter u32 |
           battery u8 (0-100, FF unknown) | clock u32 (Unix seconds, UTC) |
           [lat i32, lon i32 in 1e-7 degrees] | [HMAC-SHA256 of bytes 2 .. before it, 16 bytes]
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import struct
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from transit.model import SealStatus

MARKER = b"\xe5\x5e"
VERSION = 1
FLAG_GNSS = 0x01
FLAG_HMAC = 0x02
HMAC_LEN = 16
_FIXED = struct.Struct(">4sIBIBI")  # manufacturer, serial, status, counter, battery, clock
_GNSS = struct.Struct(">ii")
MAX_BODY = _FIXED.size + _GNSS.size + HMAC_LEN
_STATUS = {0: SealStatus.SEALED, 1: SealStatus.OPENED, 2: SealStatus.TAMPERED}
_STATUS_CODE = {v: k for k, v in _STATUS.items()}
_MFR = re.compile(rb"^[A-Z0-9]{4}$")


@dataclass(frozen=True)
class SealFrame:
    """One decoded seal report."""

    manufacturer: str
    serial: int
    status: SealStatus
    counter: int
    battery_pct: int | None
    clock: datetime
    lat: float | None = None
    lon: float | None = None
    signed: bool = False

    @property
    def seal_id(self) -> str:
        """The seal id as the rest of the system writes it: ``MFR-SERIAL``."""
        return f"{self.manufacturer}-{self.serial:010d}"


@dataclass(frozen=True)
class BadFrame:
    """A frame that was found but refused, with the reason and its bytes."""

    reason: str
    raw: bytes


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), from the standard library."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode(frame: SealFrame, key: bytes | None = None) -> bytes:
    """The bytes of a frame; signed with ``key`` when one is given."""
    if not _MFR.match(frame.manufacturer.encode()):
        raise ValueError(f"manufacturer {frame.manufacturer!r} must be 4 of A-Z, 0-9")
    battery = 0xFF if frame.battery_pct is None else frame.battery_pct
    body = _FIXED.pack(
        frame.manufacturer.encode(),
        frame.serial,
        _STATUS_CODE[frame.status],
        frame.counter,
        battery,
        int(frame.clock.timestamp()),
    )
    flags = 0
    if frame.lat is not None and frame.lon is not None:
        flags |= FLAG_GNSS
        body += _GNSS.pack(round(frame.lat * 1e7), round(frame.lon * 1e7))
    if key is not None:
        flags |= FLAG_HMAC
        length = len(body) + HMAC_LEN
        head = bytes([VERSION, flags]) + length.to_bytes(2, "big")
        body += hmac.new(key, head + body, hashlib.sha256).digest()[:HMAC_LEN]
    head = bytes([VERSION, flags]) + len(body).to_bytes(2, "big")
    return MARKER + head + body + crc16(head + body).to_bytes(2, "big")


class SealFrameDecoder:
    """Feed bytes as they come; take frames (or bad frames) out.

    Handles frames split across reads and several in one read; after garbage or a
    bad frame it resynchronises on the next start marker. ``keys`` maps a seal id to
    its HMAC key: a frame from such a seal must be signed, and signed right.
    """

    def __init__(self, keys: dict[str, bytes] | None = None) -> None:
        self._buf = bytearray()
        self._events: deque[SealFrame | BadFrame] = deque()
        self.keys = keys or {}
        self.garbage_bytes = 0

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the line."""
        self._buf += data
        self._parse()

    def next_event(self) -> SealFrame | BadFrame | None:
        """The next decoded item, or None when more bytes are needed."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[SealFrame | BadFrame]:
        """Every item decoded so far."""
        out = list(self._events)
        self._events.clear()
        return out

    def _skip(self, n: int) -> None:
        del self._buf[:n]

    def _parse(self) -> None:
        buf = self._buf
        while True:
            start = buf.find(MARKER)
            if start < 0:
                # Keep a trailing first marker byte: the second may come in the next read.
                keep = 1 if buf[-1:] == MARKER[:1] else 0
                self.garbage_bytes += len(buf) - keep
                self._skip(len(buf) - keep)
                return
            if start:
                self.garbage_bytes += start
                self._skip(start)
            if len(buf) < 6:
                return
            version, flags, length = buf[2], buf[3], int.from_bytes(buf[4:6], "big")
            reason = self._check_header(version, flags, length)
            if reason:
                self._events.append(BadFrame(reason, bytes(buf[:6])))
                self._skip(2)  # past this marker; a real frame may start inside
                continue
            total = 6 + length + 2
            if len(buf) < total:
                return
            raw = bytes(buf[:total])
            if crc16(raw[2:-2]) != int.from_bytes(raw[-2:], "big"):
                self._events.append(BadFrame("crc mismatch", raw))
                self._skip(2)
                continue
            self._skip(total)
            self._events.append(self._decode_body(raw, flags))

    @staticmethod
    def _check_header(version: int, flags: int, length: int) -> str:
        if version != VERSION:
            return f"unsupported version {version}"
        if flags & ~(FLAG_GNSS | FLAG_HMAC):
            return f"unknown flags {flags:#04x}"
        expected = _FIXED.size + (_GNSS.size if flags & FLAG_GNSS else 0)
        expected += HMAC_LEN if flags & FLAG_HMAC else 0
        if length != expected:
            return f"body length {length} != {expected} for flags {flags:#04x}"
        return ""

    def _decode_body(self, raw: bytes, flags: int) -> SealFrame | BadFrame:
        body = raw[6:-2]
        mfr, serial, status, counter, battery, clock = _FIXED.unpack_from(body)
        if not _MFR.match(mfr):
            return BadFrame(f"manufacturer id {mfr!r} is not 4 of A-Z, 0-9", raw)
        if status not in _STATUS:
            return BadFrame(f"unknown status {status}", raw)
        if battery > 100 and battery != 0xFF:
            return BadFrame(f"battery {battery} > 100", raw)
        lat = lon = None
        if flags & FLAG_GNSS:
            ilat, ilon = _GNSS.unpack_from(body, _FIXED.size)
            lat, lon = ilat / 1e7, ilon / 1e7
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                return BadFrame(f"position {lat},{lon} out of range", raw)
        frame = SealFrame(
            manufacturer=mfr.decode(),
            serial=serial,
            status=_STATUS[status],
            counter=counter,
            battery_pct=None if battery == 0xFF else battery,
            clock=datetime.fromtimestamp(clock, UTC),
            lat=lat,
            lon=lon,
            signed=bool(flags & FLAG_HMAC),
        )
        key = self.keys.get(frame.seal_id)
        if flags & FLAG_HMAC:
            if key is None:
                return BadFrame(f"signed frame from seal {frame.seal_id} with no key known", raw)
            mac = hmac.new(key, raw[2 : -2 - HMAC_LEN], hashlib.sha256).digest()[:HMAC_LEN]
            if not hmac.compare_digest(mac, body[-HMAC_LEN:]):
                return BadFrame(f"bad HMAC from seal {frame.seal_id}", raw)
        elif key is not None:
            return BadFrame(f"unsigned frame from seal {frame.seal_id}, which holds a key", raw)
        return frame
