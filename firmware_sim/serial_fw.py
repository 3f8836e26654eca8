"""Firmware on a serial line: a GNSS receiver speaking NMEA and a seal reader sending
e-seal frames, over real pseudo-terminals that the edge reader opens like a USB port.

A port has a stable path (a symlink, as /dev/serial/by-id gives one); unplugging
closes the pseudo-terminal, replugging makes a new one behind the same path.
"""

from __future__ import annotations

import contextlib
import os
import tty
from datetime import datetime
from functools import reduce
from pathlib import Path

from transit.devices.eseal import SealFrame, encode


class VirtualPort:
    """A pseudo-terminal pair; the edge opens ``path``, the firmware writes ``master``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master = -1
        self._slave = -1
        self.plug()

    def plug(self) -> None:
        """Make a new pseudo-terminal and point the stable path at it."""
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tmp = self.path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(self._slave))
        tmp.replace(self.path)

    def unplug(self) -> None:
        """Pull the cable: the reader's next read fails."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self._slave = -1

    def write(self, data: bytes) -> None:
        """Send bytes down the line (all of them)."""
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def close(self) -> None:
        """Unplug for good."""
        if self.master >= 0:
            self.unplug()


def _nmea(body: str) -> bytes:
    return f"${body}*{reduce(lambda a, c: a ^ ord(c), body, 0):02X}\r\n".encode()


def _dm(value: float, width: int, pos: str, neg: str) -> tuple[str, str]:
    hemi = pos if value >= 0 else neg
    value = abs(value)
    deg = int(value)
    minutes = (value - deg) * 60
    return f"{deg:0{width}d}{minutes:08.5f}", hemi


def nmea_epoch(t: datetime, lat: float, lon: float, speed_kmh: float, course: float) -> bytes:
    """The RMC and GGA sentences a receiver sends for one fix."""
    hms = f"{t:%H%M%S}.{t.microsecond // 10000:02d}"
    la, ns = _dm(lat, 2, "N", "S")
    lo, ew = _dm(lon, 3, "E", "W")
    knots = speed_kmh / 1.852
    rmc = f"GPRMC,{hms},A,{la},{ns},{lo},{ew},{knots:.2f},{course:.1f},{t:%d%m%y},,,A"
    gga = f"GPGGA,{hms},{la},{ns},{lo},{ew},1,09,0.9,25.0,M,5.0,M,,"
    return _nmea(rmc) + _nmea(gga)


def seal_report(frame: SealFrame, key: bytes | None = None) -> bytes:
    """The bytes a seal reader sends for one seal report."""
    return encode(frame, key)
