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

from firmware_sim.truck import Truck
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


class SerialFleet:
    """Trucks whose GNSS receiver and seal reader each talk on a pseudo-terminal.

    ``DIR/<device>-gps`` carries NMEA, ``DIR/<device>-seal`` carries e-seal frames; an
    edge reader per truck (``transit edge --device-id <device> --serial ... --serial ...``)
    turns them into MQTT. A ``noise`` incident puts garbage and half frames on the lines.
    """

    def __init__(self, trucks: list[Truck], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.trucks = trucks
        self.ports = {
            t.device_id: (
                VirtualPort(directory / f"{t.device_id}-gps"),
                VirtualPort(directory / f"{t.device_id}-seal"),
            )
            for t in trucks
        }

    def step(self, t: datetime) -> None:
        """One reporting interval for every truck."""
        for truck in self.trucks:
            gps, seal_port = self.ports[truck.device_id]
            telemetry, seals = truck.step(t)
            noisy = truck.active("noise") is not None
            for fix in telemetry.fixes if telemetry else []:
                data = nmea_epoch(
                    fix.t, fix.lat, fix.lon, fix.speed_kmh or 0.0, fix.course_deg or 0.0
                )
                gps.write((truck.rng.randbytes(5) + b"\r\n" + data) if noisy else data)
            for s in seals:
                mfr, serial = s.seal_id.split("-")
                frame = seal_report(
                    SealFrame(
                        mfr,
                        int(serial),
                        s.status,
                        s.counter,
                        round(s.battery_pct or 0),
                        s.t,
                        s.lat,
                        s.lon,
                    )
                )
                if noisy:
                    frame = frame[: len(frame) // 2] + truck.rng.randbytes(3) + frame
                seal_port.write(frame)

    def close(self) -> None:
        """Unplug every port."""
        for gps, seal in self.ports.values():
            gps.close()
            seal.close()
