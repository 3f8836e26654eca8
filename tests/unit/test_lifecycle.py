"""The transit lifecycle: every transition and every refusal, pure."""

from __future__ import annotations

import itertools

import pytest

from transit.lifecycle import (
    EN_ROUTE,
    FINISHED,
    INCIDENT_CODES,
    OPEN,
    TRANSITIONS,
    UNDER_WAY,
    Action,
    CloseFacts,
    Refused,
    ReleaseFacts,
    SealFact,
    State,
    close,
    incident_code,
    next_state,
    release,
    transition,
)

ALLOWED = {
    (State.DECLARED, Action.RELEASE): State.RELEASED,
    (State.DECLARED, Action.CANCEL): State.CANCELLED,
    (State.RELEASED, Action.DEPART): State.IN_TRANSIT,
    (State.RELEASED, Action.CANCEL): State.CANCELLED,
    (State.RELEASED, Action.CROSS): State.RELEASED,
    (State.RELEASED, Action.ARRIVE): State.ARRIVED,
    (State.RELEASED, Action.OVERDUE): State.OVERDUE,
    (State.RELEASED, Action.INCIDENT): State.RELEASED,
    (State.IN_TRANSIT, Action.CROSS): State.IN_TRANSIT,
    (State.IN_TRANSIT, Action.ARRIVE): State.ARRIVED,
    (State.IN_TRANSIT, Action.OVERDUE): State.OVERDUE,
    (State.IN_TRANSIT, Action.INCIDENT): State.IN_TRANSIT,
    (State.OVERDUE, Action.CROSS): State.OVERDUE,
    (State.OVERDUE, Action.ARRIVE): State.ARRIVED,
    (State.OVERDUE, Action.INCIDENT): State.OVERDUE,
    (State.ARRIVED, Action.CLOSE): State.CLOSED,
    (State.ARRIVED, Action.INCIDENT): State.ARRIVED,
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(State, Action)))
def test_every_transition_and_every_refusal(state: State, action: Action) -> None:
    want = ALLOWED.get((state, action))
    if want is None:
        with pytest.raises(Refused, match=f"cannot {action.value} a transit that is {state.value}"):
            transition(state, action)
    else:
        assert transition(state, action) is want


def test_the_table_in_the_code_is_the_one_tested() -> None:
    in_code = {(s, a) for a, (sources, _) in TRANSITIONS.items() for s in sources}
    assert in_code == set(ALLOWED)


def test_next_state_is_where_an_action_leads_or_none_where_refused() -> None:
    for state, action in itertools.product(State, Action):
        assert next_state(state, action) is ALLOWED.get((state, action)), (state, action)


def test_the_named_sets_of_states_agree_with_the_table() -> None:
    starts = {s for sources, _ in TRANSITIONS.values() for s in sources}
    assert not FINISHED & starts  # nothing moves a finished transit
    assert {State.CLOSED, State.CANCELLED} == FINISHED
    assert set(State) - FINISHED == OPEN
    assert OPEN - {State.DECLARED} == UNDER_WAY  # released and not finished
    assert TRANSITIONS[Action.INCIDENT][0] == UNDER_WAY
    assert TRANSITIONS[Action.ARRIVE][0] == EN_ROUTE == UNDER_WAY - {State.ARRIVED}


SEALED = SealFact("S1", True, "sealed", True)


def test_release_needs_the_tracker_reporting_and_every_seal_armed() -> None:
    assert release(State.DECLARED, ReleaseFacts(True, [SEALED])) is State.RELEASED
    with pytest.raises(Refused) as exc:
        release(
            State.DECLARED,
            ReleaseFacts(
                False,
                [SEALED, SealFact("S2", False, None, False), SealFact("S3", True, "opened", False)],
            ),
        )
    assert exc.value.reasons == [
        "the tracker has not reported in the last 10 minutes",
        "seal S2 has not reported",
        "seal S3 is not armed and sealed (it reports opened)",
    ]
    with pytest.raises(Refused, match="cannot release a transit that is in_transit"):
        release(State.IN_TRANSIT, ReleaseFacts(True, [SEALED]))


def _facts(**kw) -> CloseFacts:
    base = {
        "officer_office": "THBKK001",
        "destination": "THBKK001",
        "inside_office": True,
        "seals": [SEALED],
        "open_seal_alerts": 0,
        "finding": None,
    }
    return CloseFacts(**(base | kw))


def test_close_at_the_destination_when_every_check_holds() -> None:
    assert close(State.ARRIVED, _facts()) == (State.CLOSED, [])
    assert close(State.ARRIVED, _facts(officer_office=None)) == (State.CLOSED, [])  # admin


def test_close_is_refused_with_every_reason() -> None:
    with pytest.raises(Refused) as exc:
        close(
            State.ARRIVED,
            _facts(
                inside_office=False,
                seals=[SealFact("S1", True, "opened", False), SealFact("S2", False, None, False)],
                open_seal_alerts=2,
            ),
        )
    assert exc.value.reasons == [
        "the truck is not inside the geofence of THBKK001",
        "seal S1 reports opened, not sealed",
        "seal S2 has not reported",
        "2 seal alert(s) still open",
    ]


def test_close_with_a_finding_records_the_failed_checks() -> None:
    state, problems = close(State.ARRIVED, _facts(inside_office=False, finding="doors resealed"))
    assert state is State.CLOSED and problems == [
        "the truck is not inside the geofence of THBKK001"
    ]


def test_only_an_officer_of_the_destination_closes() -> None:
    with pytest.raises(Refused, match="an officer of MYKUL001 cannot close"):
        close(State.ARRIVED, _facts(officer_office="MYKUL001", finding="anything"))
    with pytest.raises(Refused, match="cannot close a transit that is in_transit"):
        close(State.IN_TRANSIT, _facts())


def test_incident_codes_are_the_ncts_list() -> None:
    assert sorted(INCIDENT_CODES) == [1, 2, 3, 4, 5, 6]
    assert incident_code(2) == "seals broken or tampered with"
    with pytest.raises(ValueError, match="incident code must be 1 to 6, not 7"):
        incident_code(7)


def test_an_officer_with_the_truck_in_front_of_them_makes_it_arrive() -> None:
    from transit.lifecycle import arrival_at_closing

    assert arrival_at_closing(State.ARRIVED, _facts(inside_office=False)) is State.ARRIVED
    assert arrival_at_closing(State.IN_TRANSIT, _facts()) is State.ARRIVED
    assert arrival_at_closing(State.OVERDUE, _facts(inside_office=False, finding="x")) is (
        State.ARRIVED
    )
    with pytest.raises(Refused) as exc:
        arrival_at_closing(State.IN_TRANSIT, _facts(inside_office=False))
    assert exc.value.reasons == [
        "the truck is not inside the geofence of THBKK001",
        "the transit has not arrived (it is in_transit)",
    ]
    with pytest.raises(Refused, match="cannot arrive a transit that is declared"):
        arrival_at_closing(State.DECLARED, _facts())
