"""Transits with a risk score made the way production makes one: declared on the
MY-TH-BKK corridor, their trackers' telemetry (a fix each 10 s, three to a message)
taken through ingest's own transaction (``transit.ingest.transaction.ingest``) with
the real pipeline, rules and geofence, on the real database. A covert truck stops
three times for 13 minutes outside any zone (the limit is 15) and goes quiet for 100 s
(the limit is 120); a clean one drives on. Both end just past the Malaysian-Thai
border, so ingest finds the crossing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from firmware_sim.route import Route
from transit import bootstrap
from transit.db import devices, store, transits
from transit.geofence.corridor import acts_network
from transit.ingest import transaction
from transit.ingest.pipeline import RawMessage
from transit.ingest.storage import load_pipeline
from transit.model import make_mrn
from transit.provision import import_geojson

CORRIDOR = "MY-TH-BKK"
BORDER_LAT = 6.52  # the route's first point this far north is in Thailand
STEP_S = 10.0
PER_MESSAGE = 3


@dataclass(frozen=True)
class Plan:
    """One truck: what it does and how it reports."""

    name: str
    kmh: float
    stops: tuple[tuple[float, float], ...] = ()  # (from minute, minutes)
    gap: tuple[float, float] | None = None  # (from minute, seconds dark)
    minutes: float = 75.0


COVERT = Plan("covert", 70.0, ((5, 13), (25, 13), (45, 13)), (62, 100))
CLEAN = Plan("clean", 75.0)


def _route() -> Route:
    feat = next(f for f in acts_network()["features"] if f["id"] == CORRIDOR)
    return Route([(float(x), float(y)) for x, y in feat["geometry"]["coordinates"]])


def _border_m(route: Route) -> float:
    s = 0.0
    while route.at(s)[1] < BORDER_LAT:
        s += 100.0
    return s


def fixes(plan: Plan, t0: datetime) -> list[tuple[datetime, float, float, float]]:
    """(time, lon, lat, speed) every 10 s; the last about 1.5 km past the border."""
    route = _route()
    moving = [0.0]
    t = 0.0
    while t < plan.minutes * 60:
        m = t / 60
        stopped = any(a <= m < a + d for a, d in plan.stops)
        moving.append(moving[-1] + (0.0 if stopped else plan.kmh / 3.6 * STEP_S))
        t += STEP_S
    start = _border_m(route) + 1500.0 - moving[-2]
    out = []
    for k, s in enumerate(moving[:-1]):
        at = k * STEP_S
        if plan.gap and plan.gap[0] * 60 <= at < plan.gap[0] * 60 + plan.gap[1]:
            continue
        stopped = moving[k + 1] == s
        lon, lat, _ = route.at(start + s)
        out.append((t0 + timedelta(seconds=at), lon, lat, 0.0 if stopped else plan.kmh))
    return out


def messages(device: str, track: list[tuple[datetime, float, float, float]]) -> list[RawMessage]:
    """The track as MQTT v1 telemetry, three fixes to a message, seq from 1."""
    out = []
    for k in range(0, len(track), PER_MESSAGE):
        body = {
            "v": 1,
            "seq": k // PER_MESSAGE + 1,
            "fixes": [
                {"t": t.isoformat(), "lon": lon, "lat": lat, "speed_kmh": v}
                for t, lon, lat, v in track[k : k + PER_MESSAGE]
            ],
        }
        out.append(RawMessage(f"transit/v1/devices/{device}/telemetry", json.dumps(body).encode()))
    return out


def declare(
    conn: Any, token: str, plans: list[Plan], trader: str | None = None
) -> dict[str, tuple[str, str]]:
    """A transit in transit per plan (of ``trader``): name -> (MRN, tracker)."""
    import_geojson(conn, acts_network())
    out = {}
    for i, p in enumerate(plans):
        tracker = f"RSK-{token}-{p.name}"
        mrn = make_mrn(26, "MY", f"RSK{token}{i:03d}"[-12:])
        devices.register(conn, tracker, "tracker")
        # heard before its transit (seq 0), so its first message starts the stream
        conn.execute("UPDATE devices SET last_seq = 0 WHERE device_id = %s", (tracker,))
        transits.declare(
            conn,
            mrn=mrn,
            tracker_id=tracker,
            corridor_id=CORRIDOR,
            office_departure="MYKUL001",
            offices_transit=["MYBKH001", "THSDO001"],
            office_destination="THBKK001",
            countries=["MY", "TH"],
            time_limit=conn.execute("SELECT now() + interval '2 days'").fetchone()[0],
            vehicle=f"V-{token}-{p.name}",
            status="in_transit",
            details={"trader": trader} if trader else None,
        )
        transits.finish_other_transits(conn, tracker, mrn)
        out[p.name] = (mrn, tracker)
    return out


def drive(
    conn: Any, settings: Any, by_device: dict[str, list[RawMessage]], now: datetime, commit: bool
) -> Iterator[int]:
    """Ingest the devices' messages in rounds (each device's next message per round),
    one transaction each, as a worker takes them; yields the round after each."""
    store.create_staging(conn)
    pipeline = bootstrap.pipeline(settings)
    load_pipeline(conn, pipeline, bootstrap.country_borders(), "")
    rounds = max(len(m) for m in by_device.values())
    for k in range(rounds):
        batch = [m[k] for m in by_device.values() if k < len(m)]
        transaction.ingest(conn, pipeline, batch, now, "test-risk", commit=commit)
        if commit:
            conn.commit()
        yield k
