"""How many of gpsd's fixes the NMEA decoder reproduces, on gpsd's 69 real captures.

A gpsd TPV report with a time and a position counts as matched when the decoder
yields a fix from the same capture within one second of the same time of day and
within 2e-6 degrees in latitude and longitude. Run:
``transit bench nmea [DIR]`` (default ../shared/data/gpsd-nmea).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from transit.devices.nmea import NmeaDecoder

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "gpsd-nmea"
TOL_S, TOL_DEG = 1.0, 2e-6


@dataclass
class Result:
    """Matched and total gpsd fixes, per capture and in all."""

    per_file: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def matched(self) -> int:
        return sum(m for m, _ in self.per_file.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.per_file.values())

    @property
    def ratio(self) -> float:
        return self.matched / self.total if self.total else 0.0


def _sod(iso: str) -> float:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def compare_file(log: Path, chk: Path) -> tuple[int, int]:
    """(matched, total) gpsd TPV fixes of one capture."""
    lines = log.read_text(errors="replace").splitlines()
    ours = sorted(
        (
            f.time.hour * 3600 + f.time.minute * 60 + f.time.second + f.time.microsecond / 1e6,
            f.lat,
            f.lon,
        )
        for f in NmeaDecoder().decode_lines(lines)
    )
    keys = [o[0] for o in ours]
    matched = total = 0
    for line in chk.read_text(errors="replace").splitlines():
        if not line.startswith('{"class":"TPV"'):
            continue
        tpv = json.loads(line)
        if "time" not in tpv or "lat" not in tpv or "lon" not in tpv:
            continue
        total += 1
        s = _sod(tpv["time"])
        i = bisect_left(keys, s - TOL_S)
        while i < len(ours) and ours[i][0] <= s + TOL_S:
            _, lat, lon = ours[i]
            if abs(lat - tpv["lat"]) <= TOL_DEG and abs(lon - tpv["lon"]) <= TOL_DEG:
                matched += 1
                break
            i += 1
    return matched, total


def run(directory: Path = DEFAULT_DIR) -> Result:
    """Compare every capture in ``directory``."""
    result = Result()
    for log in sorted(directory.glob("*.log")):
        chk = log.with_name(log.name + ".chk")
        if chk.exists():
            result.per_file[log.name] = compare_file(log, chk)
    return result


def report(directory: Path = DEFAULT_DIR) -> Result:
    """``transit bench nmea [DIR]``: print the comparison, file by file where it falls short."""
    r = run(directory)
    for name, (m, t) in r.per_file.items():
        if m < t:
            print(f"  {name}: {m}/{t}")
    print(
        f"captures: {len(r.per_file)}  gpsd TPV fixes: {r.total}  matched: {r.matched}"
        f"  ratio: {r.ratio:.4f}  (goal >= 0.98)"
    )
    return r
