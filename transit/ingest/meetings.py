"""The rendezvous rule on the clock: trucks stopped together outside any office.

A pair of trucks may report to two different ingest workers, so the rule does not run
in a batch: the process that holds the watchdog lease runs it on each tick, over every
transit's newest stored fix, and keeps the rule's episodes in ``rendezvous_state`` in
the tick's transaction. A process that takes the lease over reads them back first.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np

from transit.config import Settings
from transit.db import rendezvous as stored
from transit.db import transits
from transit.db.query import Conn
from transit.ingest.pipeline import Pipeline, rules_config
from transit.lifecycle import UNDER_WAY
from transit.model import AlertEvent
from transit.rules.rendezvous import Positions, RendezvousDetector, RendezvousSettings, alert_events

log = logging.getLogger(__name__)


class Meetings:
    """The rendezvous detector of the lease holder (built, and its state read back,
    the first time this process runs it)."""

    def __init__(self, settings: Settings) -> None:
        self.bounds = RendezvousSettings(
            distance_m=settings.rendezvous_m, min_s=settings.rendezvous_s
        )
        self._detector: RendezvousDetector | None = None

    def forget(self) -> None:
        """The lease was lost: the next holder's state is the stored one."""
        self._detector = None

    def run(self, conn: Conn, pipeline: Pipeline, now: datetime) -> list[AlertEvent]:
        """One window: the newest fix of every transit under way; the alerts it brings.
        The episodes are saved in the caller's transaction."""
        if self._detector is None:
            zones = pipeline.engine.zones_of if pipeline.engine is not None else None
            self._detector = RendezvousDetector(self.bounds, zones)
            state = stored.load(conn)
            if state is not None:
                try:
                    self._detector.restore(state)
                except ValueError as exc:  # an older layout: start afresh, say so
                    log.warning("rendezvous state not read back (%s); starting afresh", exc)
        rows = transits.positions(conn, sorted(str(s) for s in UNDER_WAY))
        found = self._detector.feed(positions(pipeline, rows), now)
        stored.save(conn, self._detector.state())
        return alert_events(found)


def positions(pipeline: Pipeline, rows: list[tuple[Any, ...]]) -> Positions:
    """Columns of the transits' newest fixes, each with its own transit's stop speed."""
    base = pipeline.thresholds
    stop = []
    for r in rows:
        active = pipeline.transits.get(r[0].strip())
        th = rules_config(active.thresholds, base) if active and active.thresholds else base
        stop.append(th.stop_speed_kmh)
    return Positions(
        devices=[r[1] for r in rows],
        mrns=[r[0].strip() for r in rows],
        lons=np.asarray([r[8] for r in rows], dtype=np.float64),
        lats=np.asarray([r[9] for r in rows], dtype=np.float64),
        speeds=np.asarray([np.nan if r[10] is None else r[10] for r in rows], dtype=np.float64),
        seconds=np.asarray([r[7].timestamp() for r in rows], dtype=np.float64),
        stop_kmh=np.asarray(stop, dtype=np.float64),
    )
