"""Ingest's transitions are the state machine's: what the pipeline finds (departure,
border crossing, overdue, arrival) moves a transit only as :mod:`transit.lifecycle`
allows, in the pipeline and in the database; change the machine's table and ingest
does otherwise, as it keeps no table of its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from transit.db import store
from transit.geofence.borders import default_path, load
from transit.geofence.corridor import acts_network, load_geojson
from transit.geofence.engine import GeofenceEngine
from transit.ingest.pipeline import Pipeline, RawMessage
from transit.ingest.types import ActiveTransit
from transit.lifecycle import (
    EN_ROUTE,
    TRANSITIONS,
    UNDER_WAY,
    Action,
    LifecycleEvent,
    State,
    next_state,
)
from transit.model import AlertType, make_mrn
from transit.provision import import_geojson

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
LIMIT = T0 + timedelta(hours=12)
TRACKER = "TRKLC"
MRN = make_mrn(26, "MY", "LIFECYCLE001")
OFFICES = ("MYKUL001", "MYBKH001", "THSDO001", "THBKK001")
# Out of the office of departure, 8 km on the road; later through the border post at
# Bukit Kayu Hitam into Thailand (Sadao); at last stopped at the office of destination.
ON_THE_ROAD = [(101.6500, 3.2000, 60.0, timedelta(minutes=10))]
ACROSS = [
    (100.4210, 6.5080, 20.0, timedelta(hours=6)),
    (100.4220, 6.5140, 20.0, timedelta(hours=6, seconds=10)),
    (100.4235, 6.5220, 20.0, timedelta(hours=6, seconds=20)),
    (100.4250, 6.5300, 20.0, timedelta(hours=6, seconds=30)),
]
AT_DESTINATION = [(100.5018, 13.7563, 0.0, timedelta(hours=15))]


@cache
def _engine() -> GeofenceEngine:
    corridors, offices = load_geojson(acts_network())
    return GeofenceEngine(corridors, offices, load(default_path()))


def _pipeline(status: State) -> Pipeline:
    p = Pipeline(_engine())
    p.devices = {TRACKER: None}
    transit = ActiveTransit(MRN, TRACKER, "MY-TH-BKK", (), ("MY", "TH"), OFFICES, LIMIT, {}, status)
    p.set_transits({TRACKER: transit}, set())
    return p


def _drive(p: Pipeline, points: list[tuple[float, float, float, timedelta]], seq: int) -> Any:
    msgs = [
        RawMessage(
            f"transit/v1/devices/{TRACKER}/telemetry",
            json.dumps(
                {
                    "v": 1,
                    "seq": seq + k,
                    "fixes": [{"t": (T0 + at).isoformat(), "lat": lat, "lon": lon, "speed_kmh": v}],
                }
            ).encode(),
        )
        for k, (lon, lat, v, at) in enumerate(points)
    ]
    now = T0 + points[-1][3]
    return p.process(msgs, now=now)


def _journey(p: Pipeline) -> list[LifecycleEvent]:
    """Depart, cross, overdue (the watchdog after the time limit), arrive (late)."""
    found: list[LifecycleEvent] = []
    found += _drive(p, ON_THE_ROAD, 1).lifecycle
    found += _drive(p, ACROSS, 10).lifecycle
    p.last_received = {TRACKER: LIMIT}
    p.tick(LIMIT + timedelta(minutes=1), found)
    found += _drive(p, AT_DESTINATION, 20).lifecycle
    p.tick(LIMIT + timedelta(hours=4), found)  # arrived: no second enquiry
    return found


def test_every_transition_ingest_records_is_one_of_the_state_machine() -> None:
    p = _pipeline(State.RELEASED)
    found = _journey(p)
    assert [e.action for e in found] == [
        Action.DEPART,
        Action.CROSS,
        Action.OVERDUE,
        Action.ARRIVE,
    ]
    state = State.RELEASED
    for e in found:
        sources, target = TRANSITIONS[e.action]
        assert state in sources, (state, e.action)
        state = state if target is None else target
    assert state is State.ARRIVED
    assert p.transits[TRACKER].status is State.ARRIVED
    assert found[1].details["office"] == "THSDO001"
    assert found[3].details["office"] == "THBKK001" and found[3].time == T0 + timedelta(hours=15)


@pytest.mark.parametrize(
    ("action", "state", "points"),
    [
        (Action.DEPART, State.RELEASED, ON_THE_ROAD),
        (Action.CROSS, State.IN_TRANSIT, ACROSS),
        (Action.ARRIVE, State.IN_TRANSIT, AT_DESTINATION),
    ],
)
def test_what_the_machine_refuses_ingest_does_not_record(
    monkeypatch, action, state, points
) -> None:
    # As the machine stands, the fixes make the action, recorded.
    assert [e.action for e in _drive(_pipeline(state), points, 1).lifecycle] == [action]
    # Refused from that state, ingest finds nothing and the transit stays.
    sources, target = TRANSITIONS[action]
    monkeypatch.setitem(TRANSITIONS, action, (sources - {state}, target))
    p = _pipeline(state)
    assert _drive(p, points, 1).lifecycle == []
    assert p.transits[TRACKER].status is state


def test_ingest_moves_a_transit_where_the_machine_says(monkeypatch) -> None:
    # The target of an action comes from the table, not from ingest.
    monkeypatch.setitem(TRANSITIONS, Action.DEPART, (frozenset({State.RELEASED}), State.OVERDUE))
    p = _pipeline(State.RELEASED)
    assert [e.action for e in _drive(p, ON_THE_ROAD, 1).lifecycle] == [Action.DEPART]
    assert p.transits[TRACKER].status is State.OVERDUE


def test_the_watchdog_asks_the_machine_before_making_a_transit_overdue(monkeypatch) -> None:
    monkeypatch.setitem(TRANSITIONS, Action.OVERDUE, (frozenset({State.RELEASED}), State.OVERDUE))
    p = _pipeline(State.IN_TRANSIT)
    p.last_received = {TRACKER: LIMIT}
    changes: list[LifecycleEvent] = []
    alerts = p.tick(LIMIT + timedelta(minutes=1), changes)
    # The time limit passed: the alert is raised all the same; the state stays.
    assert [a.type for a in alerts] == [AlertType.OVERDUE]
    assert changes == []
    assert p.transits[TRACKER].status is State.IN_TRANSIT


def test_the_time_limit_runs_until_the_transit_arrives() -> None:
    late = {}
    for state in sorted(UNDER_WAY):
        p = _pipeline(state)
        p.last_received = {TRACKER: LIMIT}
        late[state] = [a.type for a in p.tick(LIMIT + timedelta(minutes=1), [])]
    assert late == {
        State.ARRIVED: [],
        State.IN_TRANSIT: [AlertType.OVERDUE],
        State.OVERDUE: [AlertType.OVERDUE],
        State.RELEASED: [AlertType.OVERDUE],
    }
    assert UNDER_WAY - {State.ARRIVED} == EN_ROUTE


@pytest.fixture
def rolled_back(db):
    """The test's writes, undone after it."""
    yield db
    db.rollback()


def _timeline(db) -> list[str]:
    rows = db.execute(
        "SELECT kind FROM transit_events WHERE mrn = %s ORDER BY id", (MRN,)
    ).fetchall()
    return [r[0] for r in rows]


def _declare(db, status: State) -> None:
    """The transit in ``status`` as the API would leave it (the ACTS network loaded)."""
    import_geojson(db, acts_network())
    db.execute(
        "INSERT INTO devices (device_id, kind) VALUES (%s, 'tracker') ON CONFLICT DO NOTHING",
        (TRACKER,),
    )
    db.execute(
        "INSERT INTO transits (mrn, status, tracker_id, corridor_id, office_departure,"
        " offices_transit, office_destination, countries, time_limit, released_at)"
        " VALUES (%s, %s, %s, 'MY-TH-BKK', %s, %s, %s, '{MY,TH}', %s, now())"
        " ON CONFLICT (mrn) DO UPDATE SET status = EXCLUDED.status, arrived_at = NULL",
        (MRN, status.value, TRACKER, OFFICES[0], list(OFFICES[1:-1]), OFFICES[-1], LIMIT),
    )
    db.execute("DELETE FROM transit_events WHERE mrn = %s", (MRN,))


def _status(db) -> tuple[str, datetime | None]:
    row = db.execute("SELECT status, arrived_at FROM transits WHERE mrn = %s", (MRN,)).fetchone()
    return row[0], row[1]


def test_the_store_records_ingest_journey_through_the_state_machine(rolled_back) -> None:
    db = rolled_back
    _declare(db, State.RELEASED)
    found = _journey(_pipeline(State.RELEASED))
    state = State.RELEASED
    for e in found:
        assert store.apply_lifecycle(db, [e]) == 1
        state = next_state(state, e.action) or state
        assert _status(db)[0] == state.value
    assert _timeline(db) == ["departed", "crossed", "overdue", "arrived"]
    assert _status(db) == ("arrived", T0 + timedelta(hours=15))
    # What the machine refuses from the state the database holds changes nothing.
    late = LifecycleEvent(MRN, Action.OVERDUE, LIMIT + timedelta(days=1))
    assert store.apply_lifecycle(db, [late]) == 0
    assert _timeline(db)[-1] == "arrived"


def test_the_store_has_no_table_of_its_own(rolled_back, monkeypatch) -> None:
    db = rolled_back
    _declare(db, State.IN_TRANSIT)
    arrive = LifecycleEvent(MRN, Action.ARRIVE, T0 + timedelta(hours=15), {"office": "THBKK001"})
    monkeypatch.setitem(TRANSITIONS, Action.ARRIVE, (frozenset({State.OVERDUE}), State.ARRIVED))
    assert store.apply_lifecycle(db, [arrive]) == 0
    assert _status(db) == ("in_transit", None)
    monkeypatch.undo()
    assert store.apply_lifecycle(db, [arrive]) == 1
    assert _status(db) == ("arrived", T0 + timedelta(hours=15))
