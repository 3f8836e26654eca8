"""What a stop is comes from the thresholds alone: a corridor or transit that sets its own
``stop_speed_kmh`` gets it from the engine's zones, the rules and the lifecycle alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.types import ActiveTransit
from transit.model import AlertType

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
MRN = "26MYS001T0000003A2"
OFFICES = ("MYKUL001", "MYBKH001", "THBKK001")


def _pipeline() -> Pipeline:
    corridors, offices = load_geojson(acts_network())
    p = Pipeline(GeofenceEngine(corridors, offices))
    p.devices = {"TRKS": None}
    transit = ActiveTransit(
        MRN,
        "TRKS",
        "MY-TH-BKK",
        (),
        ("MY", "TH"),
        OFFICES,
        thresholds={"stop_speed_kmh": 10.0},  # a border queue crawls: 10 km/h is waiting
    )
    p.set_transits({"TRKS": transit}, set())
    return p


def _crawl(lon: float, lat: float, minutes: int, speed: float = 8.0) -> list[RawMessage]:
    """One fix a minute at one place, crawling at ``speed`` km/h."""
    return [
        RawMessage(
            "transit/v1/devices/TRKS/telemetry",
            json.dumps(
                {
                    "v": 1,
                    "seq": i + 1,
                    "fixes": [
                        {
                            "t": (T0 + timedelta(minutes=i)).isoformat(),
                            "lat": lat,
                            "lon": lon,
                            "speed_kmh": speed,
                        }
                    ],
                }
            ).encode(),
        )
        for i in range(minutes + 1)
    ]


def _kinds(p: Pipeline, messages: list[RawMessage]) -> set[tuple[AlertType, str]]:
    end = T0 + timedelta(hours=1)
    return {(a.type, a.action) for a in p.process(messages, now=end).alerts}


def test_waiting_at_its_office_under_a_raised_stop_speed_is_no_unauthorized_stop() -> None:
    # 20 minutes at the Bukit Kayu Hitam border office, a declared office of transit,
    # at 8 km/h: stopped for this transit, and permitted there.
    kinds = _kinds(_pipeline(), _crawl(100.421, 6.508, 20))
    assert (AlertType.UNAUTHORIZED_STOP, "open") not in kinds
    assert AlertType.WRONG_OFFICE not in {k for k, _ in kinds}


def test_the_same_crawl_outside_any_zone_is_an_unauthorized_stop() -> None:
    # South of Tapah, no office or parking: 8 km/h for 20 minutes is a stop too long.
    kinds = _kinds(_pipeline(), _crawl(101.3040, 4.1412, 20))
    assert (AlertType.UNAUTHORIZED_STOP, "open") in kinds


def test_crawling_into_the_office_of_destination_under_a_raised_stop_speed_is_arrival() -> None:
    p = _pipeline()
    out = p.process(_crawl(100.5018, 13.7563, 2), now=T0 + timedelta(hours=1))
    assert [e.action for e in out.lifecycle if e.action == "arrive"] == ["arrive"]
    assert p.transits["TRKS"].status == "arrived"
