"""A transit's rule state as JSON: what the rules remember between two batches.

Ingest keeps this state in the database (one row per transit), not in a worker's
memory, so any worker on any machine can take a truck's next message. Only what the
rules remember is here (:class:`DeviationState`, :class:`MovementState`, the last good
fix among it, which the jump filter compares with); the declaration, thresholds and
country ids are derived from the transit again. Pure, and exact: ``decode(encode(s))``
gives back an equal state (tested with hypothesis).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from transit.rules.deviation import DeviationState
from transit.rules.movement import FixView, MovementState

VERSION = 1  # the layout of the JSON below


@dataclass
class RuleState:
    """Everything the event-time rules remember of one transit."""

    deviation: DeviationState = field(default_factory=DeviationState)
    movement: MovementState = field(default_factory=MovementState)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def encode(state: RuleState) -> dict[str, Any]:
    """The state as a JSON-ready object (sorted, so equal states encode equally)."""
    dev, mov = state.deviation, state.movement
    last = mov.last
    return {
        "v": VERSION,
        "deviation": {
            "last_time": _time(dev.last_time),
            "outside_since": _time(dev.outside_since),
            "inside_since": _time(dev.inside_since),
            "alert_open": dev.alert_open,
        },
        "movement": {
            "last": None
            if last is None
            else [
                last.time.isoformat(),
                last.lat,
                last.lon,
                last.speed_kmh,
                last.country,
                last.zone,
            ],
            "stopped_since": _time(mov.stopped_since),
            "stop_alerted": mov.stop_alerted,
            "open_keys": sorted([k, c] for k, c in mov.open_keys),
        },
    }


def decode(data: Mapping[str, Any]) -> RuleState:
    """The state from :func:`encode`'s object.

    Raises:
        ValueError: the object is not a rule state of a known layout.
    """
    if data.get("v") != VERSION:
        raise ValueError(f"rule state of layout {data.get('v')!r}, expected {VERSION}")
    d, m = data["deviation"], data["movement"]
    last = m["last"]
    return RuleState(
        deviation=DeviationState(
            last_time=_parse(d["last_time"]),
            outside_since=_parse(d["outside_since"]),
            inside_since=_parse(d["inside_since"]),
            alert_open=bool(d["alert_open"]),
        ),
        movement=MovementState(
            last=None if last is None else FixView(datetime.fromisoformat(last[0]), *last[1:]),
            stopped_since=_parse(m["stopped_since"]),
            stop_alerted=bool(m["stop_alerted"]),
            open_keys={(k, c) for k, c in m["open_keys"]},
        ),
    )
