"""One serial line's bytes, sans-IO: NMEA sentences or e-seal frames, found by sniffing.

A port carries either a GNSS receiver (NMEA text) or a seal reader (binary frames).
Until the first valid item the stream is fed to both decoders; after it, only to
the one that recognised it. Refused sentences and frames come out with their reason
and bytes, so the edge can keep them for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass

from transit.devices.eseal import BadFrame, SealFrame, SealFrameDecoder
from transit.devices.nmea import NmeaDecoder, NmeaError, NmeaFix, split_sentence

MAX_LINE = 512


@dataclass(frozen=True)
class Reject:
    """Bytes from the line that were refused, and why."""

    reason: str
    raw: bytes


Reading = NmeaFix | SealFrame | Reject


class PortDecoder:
    """Bytes in, readings out. One GNSS fix per epoch (RMC and GGA of one second merge)."""

    def __init__(self, seal_keys: dict[str, bytes] | None = None) -> None:
        self.kind: str | None = None  # "nmea" or "seal" once recognised
        self._line = bytearray()
        self._nmea = NmeaDecoder()
        self._frames = SealFrameDecoder(seal_keys)
        self._last_fix: NmeaFix | None = None

    def receive_data(self, data: bytes) -> list[Reading]:
        """Feed bytes read from the port; returns what they completed."""
        out: list[Reading] = []
        if self.kind != "seal":
            out += self._lines(data)
        if self.kind != "nmea":
            self._frames.receive_data(data)
            for ev in self._frames.events():
                if isinstance(ev, BadFrame):
                    out.append(Reject(ev.reason, ev.raw))
                else:
                    self.kind = "seal"
                    out.append(ev)
        return out

    def _lines(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        self._line += data
        while True:
            nl = self._line.find(b"\n")
            if nl < 0:
                if len(self._line) > MAX_LINE:
                    if self.kind == "nmea":
                        out.append(Reject("line too long", bytes(self._line[:MAX_LINE])))
                    del self._line[:]
                return out
            raw = bytes(self._line[:nl]).strip()
            del self._line[: nl + 1]
            start = raw.find(b"$")
            if start < 0:
                continue
            text = raw[start:].decode("ascii", "replace")
            try:
                split_sentence(text)
            except NmeaError as exc:
                if self.kind != "seal":
                    out.append(Reject(f"nmea: {exc}", raw))
                continue
            self.kind = "nmea"
            fix = self._nmea.feed(text)
            if fix is None:
                continue
            if self._last_fix is not None and fix.time == self._last_fix.time:
                continue  # the same epoch, already reported from another sentence
            self._last_fix = fix
            out.append(fix)
