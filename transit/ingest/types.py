"""The values the pure ingest core takes and gives: a transit under way as ingest watches
it, and a message refused at the boundary. Pure: the adapters (the store, the worker)
import these, never the reverse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from transit.lifecycle import State


@dataclass(frozen=True)
class DeadLetter:
    """A message refused at the boundary, kept with its raw bytes for inspection."""

    source: str
    topic: str | None
    raw: bytes
    reason: str
    detail: str
    sig: str | None = None  # the message's HMAC user property, kept to verify a replay


@dataclass(frozen=True)
class ActiveTransit:
    """What ingest needs to know of a transit in progress (a state of
    :data:`transit.lifecycle.UNDER_WAY`)."""

    mrn: str
    tracker_id: str
    corridor_id: str
    seal_ids: tuple[str, ...]
    countries: tuple[str, ...] = ()
    offices: tuple[str, ...] = ()  # departure, transit and destination
    time_limit: datetime | None = None
    # the corridor's thresholds with the transit's own over them
    thresholds: dict[str, float] = field(default_factory=dict)
    status: State = State.IN_TRANSIT
