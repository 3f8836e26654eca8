"""The transit lifecycle (NCTS vocabulary) as a pure state machine.

    declared --release--> released --depart--> in_transit --arrive--> arrived --close--> closed
        |                    |                     |  cross (border, office of transit)
        +--cancel--> cancelled (from declared or released, before the truck leaves)
                             +--- time limit passed without arrival ---> overdue (enquiry)

A transit that is overdue can still arrive (late) and be closed. Incidents (NCTS code
list CL019, codes 1 to 6) are recorded against a transit that is released, in transit,
overdue or arrived; they flag it and do not change its state.

Every refusal says why, in words an officer reads: :class:`Refused` carries reasons.
No IO: the API and ingest gather the facts (:class:`ReleaseFacts`, :class:`CloseFacts`)
and write the outcome. Every change of state, from an officer or found by ingest
(:class:`LifecycleEvent`), is decided here and nowhere else: :data:`TRANSITIONS` is the
one table, :data:`UNDER_WAY` the one set of states ingest watches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    DECLARED = "declared"
    RELEASED = "released"
    IN_TRANSIT = "in_transit"
    ARRIVED = "arrived"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    OVERDUE = "overdue"


class Action(StrEnum):
    RELEASE = "release"
    DEPART = "depart"  # the truck leaves the office of departure (found by ingest)
    CROSS = "cross"  # a border crossing (found by ingest)
    ARRIVE = "arrive"  # at the office of destination or exit (found by ingest)
    CLOSE = "close"
    CANCEL = "cancel"
    OVERDUE = "overdue"  # the time limit passed without arrival (watchdog)
    INCIDENT = "incident"


INCIDENT_CODES = {
    1: "deviation from the prescribed itinerary",
    2: "seals broken or tampered with",
    3: "goods transferred to another means of transport",
    4: "partly or fully unloaded",
    5: "carrier unable to comply",
    6: "other",
}

# The states in which ingest watches a transit's tracker (and incidents are recorded).
UNDER_WAY = frozenset({State.RELEASED, State.IN_TRANSIT, State.OVERDUE, State.ARRIVED})
# Under way and not yet arrived: the truck is on the road and its time limit runs.
EN_ROUTE = UNDER_WAY - {State.ARRIVED}
# Nothing changes a transit in these states any more.
FINISHED = frozenset({State.CLOSED, State.CANCELLED})
# Declared and not finished: a tracker on such a transit is taken.
OPEN = frozenset(State) - FINISHED

# Which states each action may start from, and where it leads (None: stays).
TRANSITIONS: dict[Action, tuple[frozenset[State], State | None]] = {
    Action.RELEASE: (frozenset({State.DECLARED}), State.RELEASED),
    Action.DEPART: (frozenset({State.RELEASED}), State.IN_TRANSIT),
    Action.CROSS: (EN_ROUTE, None),
    Action.ARRIVE: (EN_ROUTE, State.ARRIVED),
    Action.CLOSE: (frozenset({State.ARRIVED}), State.CLOSED),
    Action.CANCEL: (frozenset({State.DECLARED, State.RELEASED}), State.CANCELLED),
    Action.OVERDUE: (frozenset({State.RELEASED, State.IN_TRANSIT}), State.OVERDUE),
    Action.INCIDENT: (UNDER_WAY, None),
}


class Refused(Exception):
    """A transition the rules do not allow, with every reason."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class LifecycleEvent:
    """An action ingest found: a departure, a border crossing or an arrival in a
    tracker's fixes, or the time limit passed (the watchdog), at its event time. The
    store applies it through :func:`next_state`, from the state the database holds."""

    mrn: str
    action: Action
    time: datetime
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SealFact:
    """What the latest report of a declared seal says."""

    seal_id: str
    reported: bool  # the seal has reported since the declaration
    status: str | None  # sealed / opened / tampered, from its latest report
    armed: bool


@dataclass(frozen=True)
class ReleaseFacts:
    """Departure checks: the tracker reports and every declared seal is armed."""

    tracker_reporting: bool
    seals: list[SealFact] = field(default_factory=list)


@dataclass(frozen=True)
class CloseFacts:
    """Exit-border checks, gathered by the API when an officer closes a transit."""

    officer_office: str | None  # the office the officer's key is bound to (admin: None)
    destination: str  # the transit's office of destination or exit
    inside_office: bool  # the truck's latest fix lies in that office's geofence
    seals: list[SealFact] = field(default_factory=list)
    open_seal_alerts: int = 0
    finding: str | None = None  # the officer records a finding: close with an incident


def next_state(state: State, action: Action) -> State | None:
    """Where ``action`` leads from ``state`` (the same state for an action that does not
    move it), or None where the machine does not allow it: ingest's question, as what
    it finds that the machine refuses is not recorded."""
    sources, target = TRANSITIONS[action]
    if state not in sources:
        return None
    return state if target is None else target


def transition(state: State, action: Action) -> State:
    """Where ``action`` leads from ``state``; :class:`Refused` where it may not."""
    target = next_state(state, action)
    if target is None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[action][0]))
        raise Refused([f"cannot {action.value} a transit that is {state.value} (only {allowed})"])
    return target


def release(state: State, facts: ReleaseFacts) -> State:
    """Release for transit, after the departure checks."""
    target = transition(state, Action.RELEASE)
    reasons = []
    if not facts.tracker_reporting:
        reasons.append("the tracker has not reported in the last 10 minutes")
    for s in facts.seals:
        if not s.reported:
            reasons.append(f"seal {s.seal_id} has not reported")
        elif not s.armed or s.status != "sealed":
            reasons.append(f"seal {s.seal_id} is not armed and sealed (it reports {s.status})")
    if reasons:
        raise Refused(reasons)
    return target


def arrival_at_closing(state: State, facts: CloseFacts) -> State:
    """The state a transit is closed from. An officer at the exit who has the truck in
    front of them (inside the office's geofence), or who records a finding, makes it
    arrive if ingest has not yet; otherwise closing waits for the arrival."""
    if state is State.ARRIVED:
        return state
    if not facts.inside_office and not facts.finding:
        raise Refused(
            [
                f"the truck is not inside the geofence of {facts.destination}",
                f"the transit has not arrived (it is {state.value})",
            ]
        )
    return transition(state, Action.ARRIVE)


def close(state: State, facts: CloseFacts) -> tuple[State, list[str]]:
    """Close at the office of destination or exit. Returns the new state and the
    findings to record as an incident (empty for a clean closure).

    Without a finding, every check must hold; with one, the officer closes anyway and
    the failed checks go into the incident."""
    target = transition(state, Action.CLOSE)
    if facts.officer_office is not None and facts.officer_office != facts.destination:
        raise Refused(
            [
                f"an officer of {facts.officer_office} cannot close a transit bound for "
                f"{facts.destination}"
            ]
        )
    problems = []
    if not facts.inside_office:
        problems.append(f"the truck is not inside the geofence of {facts.destination}")
    for s in facts.seals:
        if not s.reported:
            problems.append(f"seal {s.seal_id} has not reported")
        elif s.status != "sealed":
            problems.append(f"seal {s.seal_id} reports {s.status}, not sealed")
    if facts.open_seal_alerts:
        problems.append(f"{facts.open_seal_alerts} seal alert(s) still open")
    if problems and not facts.finding:
        raise Refused(problems)
    return target, problems


def incident_code(code: int) -> str:
    """The NCTS description of an incident code; ValueError for any other code."""
    if code not in INCIDENT_CODES:
        raise ValueError(f"incident code must be 1 to 6, not {code}")
    return INCIDENT_CODES[code]
