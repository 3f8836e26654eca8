"""Fuzz the e-seal frame decoder: random bytes and mutated valid frames, no exception.

``transit bench fuzz-eseal [--count N] [--seed S]`` prints how many inputs were
fed, how many frames and bad frames came out, and how many exceptions escaped (must
be 0). Deterministic for a seed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from transit.devices.eseal import MARKER, BadFrame, SealFrame, SealFrameDecoder, encode
from transit.model import SealStatus

KEY = b"fuzz-key-0123456"


@dataclass
class FuzzResult:
    """Counts of one fuzz run."""

    inputs: int = 0
    frames: int = 0
    bad_frames: int = 0
    exceptions: int = 0
    first_exception: str = ""


def _valid(rng: random.Random) -> bytes:
    frame = SealFrame(
        manufacturer="".join(rng.choice("ABCDEFXYZ0123") for _ in range(4)),
        serial=rng.randrange(2**32),
        status=rng.choice(list(SealStatus)),
        counter=rng.randrange(2**32),
        battery_pct=rng.choice([None, rng.randrange(101)]),
        clock=datetime.fromtimestamp(rng.randrange(2**31), UTC),
        lat=rng.uniform(-90, 90) if rng.random() < 0.5 else None,
        lon=rng.uniform(-180, 180),
    )
    return encode(frame, KEY if rng.random() < 0.3 else None)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:
            b[rng.randrange(len(b) + 1) : 0] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and b:
            i = rng.randrange(len(b))
            del b[i : i + rng.randint(1, 6)]
        else:
            b[rng.randrange(len(b) + 1) : 0] = MARKER
    return bytes(b)


def fuzz(count: int, seed: int = 0) -> FuzzResult:
    """Feed ``count`` inputs, each to a fresh decoder, in random chunk sizes."""
    rng = random.Random(seed)
    res = FuzzResult()
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3:
            data = rng.randbytes(rng.randint(0, 64))
        elif kind < 0.4:
            data = MARKER + rng.randbytes(rng.randint(0, 60))
        else:
            data = _mutate(rng, b"".join(_valid(rng) for _ in range(rng.randint(1, 3))))
        dec = SealFrameDecoder({"ABCD-0000000001": KEY})
        res.inputs += 1
        try:
            i = 0
            while i < len(data):
                n = rng.randint(1, 40)
                dec.receive_data(data[i : i + n])
                i += n
            for ev in dec.events():
                if isinstance(ev, BadFrame):
                    res.bad_frames += 1
                else:
                    res.frames += 1
        except Exception as exc:  # counting what escapes is the point
            res.exceptions += 1
            res.first_exception = res.first_exception or f"{type(exc).__name__}: {exc}"
    return res


def report(count: int, seed: int) -> FuzzResult:
    """``transit bench fuzz-eseal``: fuzz, and print what was found."""
    t0 = time.perf_counter()
    r = fuzz(count, seed)
    print(
        f"inputs: {r.inputs}  frames: {r.frames}  bad frames: {r.bad_frames}"
        f"  exceptions: {r.exceptions}  seconds: {time.perf_counter() - t0:.1f}"
        + (f"  first: {r.first_exception}" if r.exceptions else "")
    )
    return r
