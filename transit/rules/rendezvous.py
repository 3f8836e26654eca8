"""Transshipment: two tracked trucks stopped side by side, outside any office or
parking zone, for longer than a few minutes, whatever their transits (NCTS incident
code 3 is what such a meeting may hide).

The detector is fed windows of fixes (the newest positions of the fleet, or a batch of
some trucks' fixes: it keeps each truck's newest fix itself) and, at each window's
``now``, looks at every truck whose newest fix is fresh and stopped (at or under its
transit's stop speed, ``Thresholds.stop_speed_kmh``, the one source of what a stop
is). A spatial join (:mod:`transit.rules.pairs`, a grid by default) finds the pairs
within ``distance_m``; pairs where either truck is inside an office or parking zone
(the geofence engine's ``zones_of``) are left out. Each pair found together is
remembered from when it was first seen (the later of its two fixes' times); once
together for ``min_s`` it is reported, once per episode. An episode ends at the first
window where the pair is not found together and either truck is no longer fresh and
stopped (it drove off, or fell silent), or the two are more than ``stray_m`` apart, or
their newest fixes are ``gap_s`` past the last time they were seen together: so a
stopped truck's stray fix (multipath puts one fix in ten about 100 m off) neither ends
a meeting nor splits it in two. A reported episode is reported ended, with its whole
duration (to the last time seen together). Time is the fixes' event time; ``now`` is
an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from transit.model import AlertEvent, AlertType, Severity
from transit.rules.movement import Thresholds
from transit.rules.pairs import JOINS, ground_m

Zones = Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.integer[Any]]]
STATE_VERSION = 1  # the layout of :meth:`RendezvousDetector.state`


@dataclass(frozen=True)
class RendezvousSettings:
    """The rule's bounds, fleet-wide (a pair has two transits; each truck's stop speed
    is its own transit's)."""

    distance_m: float = 50.0  # trucks this close or closer are together
    min_s: float = 5 * 60.0  # together this long: a rendezvous
    fresh_s: float = Thresholds().signal_lost_s  # an older fix places its truck nowhere
    # Both still stopped, apart this long (event time) since last seen together: the
    # meeting ended; shorter, stray fixes. The signal-loss time: a stray fix sent at the
    # reporting period stands until the next one, which must not end the meeting.
    gap_s: float = Thresholds().signal_lost_s
    # Farther apart than this, both stopped, is no stray fix (multipath is ~100 m; the
    # jump filter's least distance): one truck left, the meeting ended at once.
    stray_m: float = Thresholds().jump_min_m

    def __post_init__(self) -> None:
        for name in ("distance_m", "min_s", "fresh_s", "gap_s", "stray_m"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"rendezvous {name} must be a positive number, not {value!r}")


class TruckFix(NamedTuple):
    """One truck's fix as the rule needs it."""

    device_id: str
    mrn: str | None  # the transit it carries, if any
    lon: float
    lat: float
    speed_kmh: float | None
    time: datetime


@dataclass(frozen=True)
class Positions:
    """A window's fixes as columns (many trucks: no object per fix)."""

    devices: Sequence[str]
    mrns: Sequence[str | None]
    lons: NDArray[np.float64]
    lats: NDArray[np.float64]
    speeds: NDArray[np.float64]  # km/h, NaN: none (not stopped)
    seconds: NDArray[np.float64]  # event time, POSIX seconds
    stop_kmh: NDArray[np.float64] | float = Thresholds().stop_speed_kmh  # each transit's

    @classmethod
    def of(
        cls, fixes: Iterable[TruckFix], stop_kmh: float = Thresholds().stop_speed_kmh
    ) -> Positions:
        """Columns from fixes (the tests' and small callers' form)."""
        rows = list(fixes)
        return cls(
            devices=[f.device_id for f in rows],
            mrns=[f.mrn for f in rows],
            lons=np.asarray([f.lon for f in rows], dtype=np.float64),
            lats=np.asarray([f.lat for f in rows], dtype=np.float64),
            speeds=np.asarray(
                [np.nan if f.speed_kmh is None else f.speed_kmh for f in rows], dtype=np.float64
            ),
            seconds=np.asarray([f.time.timestamp() for f in rows], dtype=np.float64),
            stop_kmh=stop_kmh,
        )


class Truck(NamedTuple):
    """One side of a rendezvous."""

    device_id: str
    mrn: str | None


@dataclass(frozen=True)
class Rendezvous:
    """Two trucks found together: where, since when and for how long (so far when
    reported, in all when ended)."""

    trucks: tuple[Truck, Truck]  # in device order
    lon: float  # midway between them, when last seen together
    lat: float
    start: datetime
    duration_s: float
    distance_m: float  # apart when last seen together

    def other(self, device_id: str) -> Truck:
        """The truck this one met."""
        a, b = self.trucks
        if device_id not in (a.device_id, b.device_id):
            raise KeyError(device_id)
        return b if a.device_id == device_id else a


@dataclass
class Found:
    """What one window brought: rendezvous reached (once per episode) and reported ones
    that ended."""

    opened: list[Rendezvous] = field(default_factory=list)
    ended: list[Rendezvous] = field(default_factory=list)
    together: int = 0  # pairs together in this window, short ones included


@dataclass
class _Episode:
    since: float  # first seen together, POSIX seconds
    last: float  # last seen together
    reported: bool = False
    seen: Rendezvous | None = None  # as last seen


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class RendezvousDetector:
    """The rule's memory across windows: each truck's newest fix and each pair's episode.

    ``zones`` says which office or parking zone each point is in (-1: none), as
    :meth:`transit.geofence.engine.GeofenceEngine.zones_of`; ``join`` names the spatial
    join (``grid``, ``strtree`` or ``all``, the same pairs by each)."""

    def __init__(
        self,
        settings: RendezvousSettings | None = None,
        zones: Zones | None = None,
        join: str = "grid",
    ) -> None:
        self.settings = settings or RendezvousSettings()
        self.zones = zones
        self.join = JOINS[join]
        self._slot: dict[str, int] = {}
        self._devices: list[str] = []
        self._mrns = np.full(1024, None, dtype=object)
        size = 1024
        self._lon = np.zeros(size)
        self._lat = np.zeros(size)
        self._speed = np.full(size, np.nan)
        self._stop = np.zeros(size)
        self._t = np.full(size, -np.inf)
        self._episodes: dict[tuple[str, str], _Episode] = {}

    def _slots(self, devices: Sequence[str]) -> NDArray[np.int64]:
        """Each device's row in the table of newest fixes (added the first time)."""
        slot = self._slot
        try:
            return np.fromiter(map(slot.__getitem__, devices), np.int64, len(devices))
        except KeyError:
            pass  # a device seen for the first time: add every new one
        for d in devices:
            if d not in slot:
                slot[d] = len(self._devices)
                self._devices.append(d)
        need = len(self._devices)
        if need > len(self._t):
            grow = max(need, 2 * len(self._t)) - len(self._t)
            self._mrns = np.r_[self._mrns, np.full(grow, None, dtype=object)]
            self._lon = np.r_[self._lon, np.zeros(grow)]
            self._lat = np.r_[self._lat, np.zeros(grow)]
            self._speed = np.r_[self._speed, np.full(grow, np.nan)]
            self._stop = np.r_[self._stop, np.zeros(grow)]
            self._t = np.r_[self._t, np.full(grow, -np.inf)]
        return np.fromiter(map(slot.__getitem__, devices), np.int64, len(devices))

    def _update(self, fixes: Positions) -> None:
        """Keep each truck's newest fix (an older or equal one changes nothing)."""
        if not len(fixes.devices):
            return
        slots = self._slots(fixes.devices)
        order = np.lexsort((fixes.seconds, slots))
        last = np.r_[slots[order][1:] != slots[order][:-1], True]
        pick = order[last]  # each device's newest fix of the window
        pick = pick[fixes.seconds[pick] > self._t[slots[pick]]]
        s = slots[pick]
        self._lon[s], self._lat[s] = fixes.lons[pick], fixes.lats[pick]
        self._speed[s], self._t[s] = fixes.speeds[pick], fixes.seconds[pick]
        self._stop[s] = np.broadcast_to(fixes.stop_kmh, fixes.lons.shape)[pick]
        self._mrns[s] = np.asarray(fixes.mrns, dtype=object)[pick]

    def _live(self, now: datetime) -> NDArray[np.bool_]:
        """Which trucks (table rows) are fresh and stopped at ``now``."""
        n = len(self._devices)
        t, speed = self._t[:n], self._speed[:n]
        return np.asarray(
            (t >= now.timestamp() - self.settings.fresh_s) & (speed <= self._stop[:n])
        )

    def pairs_together(
        self, now: datetime, live: NDArray[np.bool_] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The trucks (table rows) together at ``now``: both fresh and stopped, within
        the distance, neither in a zone."""
        n = len(self._devices)
        rows = np.flatnonzero(self._live(now) if live is None else live)
        i, j = self.join(self._lon[rows], self._lat[rows], self.settings.distance_m)
        a, b = rows[i], rows[j]
        if self.zones is not None and a.size:
            near = np.unique(np.r_[a, b])
            zoned = np.zeros(n, dtype=bool)
            zoned[near] = self.zones(self._lon[near], self._lat[near]) >= 0
            keep = ~zoned[a] & ~zoned[b]
            a, b = a[keep], b[keep]
        return a, b

    def feed(self, fixes: Positions, now: datetime) -> Found:
        """Take a window's fixes and say what it brought at ``now``."""
        self._update(fixes)
        live = self._live(now)
        a, b = self.pairs_together(now, live)
        apart = ground_m(self._lon[a], self._lat[a], self._lon[b], self._lat[b]).tolist()
        found = Found(together=len(a))
        current: set[tuple[str, str]] = set()
        for k, (ra, rb) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            if self._devices[ra] > self._devices[rb]:
                ra, rb = rb, ra
            key = (self._devices[ra], self._devices[rb])
            current.add(key)
            at = float(max(self._t[ra], self._t[rb]))
            ep = self._episodes.get(key)
            if ep is None:
                ep = self._episodes[key] = _Episode(since=at, last=at)
            ep.last = max(ep.last, at)
            ep.seen = Rendezvous(
                trucks=(Truck(key[0], self._mrns[ra]), Truck(key[1], self._mrns[rb])),
                lon=float(self._lon[ra] + self._lon[rb]) / 2,
                lat=float(self._lat[ra] + self._lat[rb]) / 2,
                start=_utc(ep.since),
                duration_s=ep.last - ep.since,
                distance_m=apart[k],
            )
            if not ep.reported and ep.last - ep.since >= self.settings.min_s:
                ep.reported = True
                found.opened.append(ep.seen)
        left = [k for k in self._episodes if k not in current]
        for key, holds in zip(left, self._holding(left, live), strict=True):
            if holds:
                continue
            ep = self._episodes.pop(key)
            if ep.reported and ep.seen is not None:
                found.ended.append(ep.seen)
        return found

    def _holding(self, keys: list[tuple[str, str]], live: NDArray[np.bool_]) -> list[bool]:
        """Of episodes not found together in this window, those that go on: both trucks
        still fresh and stopped, closer than ``stray_m``, their newest fixes less than
        ``gap_s`` past the last time they were seen together."""
        if not keys:
            return []
        known = [(self._slot.get(a, -1), self._slot.get(b, -1)) for a, b in keys]
        ra, rb = np.asarray(known, dtype=np.int64).reshape(-1, 2).T
        seen = (ra >= 0) & (rb >= 0)  # a restored episode's truck may not have reported
        if not seen.any():  # (then the table may hold no truck at all)
            return [False] * len(keys)
        ra, rb = np.where(seen, ra, 0), np.where(seen, rb, 0)
        last = np.fromiter((self._episodes[k].last for k in keys), np.float64, len(keys))
        apart = ground_m(self._lon[ra], self._lat[ra], self._lon[rb], self._lat[rb])
        holds = (
            seen
            & live[ra]
            & live[rb]
            & (apart <= self.settings.stray_m)
            & (np.maximum(self._t[ra], self._t[rb]) - last < self.settings.gap_s)
        )
        return [bool(h) for h in holds]

    def state(self) -> dict[str, Any]:
        """The episodes under way as a JSON-ready object: what another process needs to
        go on where this one stopped (the newest fixes it reads again)."""
        return {
            "v": STATE_VERSION,
            "episodes": sorted(
                [a, b, ep.since, ep.last, ep.reported] for (a, b), ep in self._episodes.items()
            ),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take the episodes of :meth:`state` (the newest fixes come with the next
        window). An episode that ends in that very window ends unreported: its place
        and trucks were not in the state.

        Raises:
            ValueError: not a state of a known layout.
        """
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"rendezvous state of layout {data.get('v')!r}")
        self._episodes = {
            (a, b): _Episode(since=float(s), last=float(last), reported=bool(r))
            for a, b, s, last, r in data["episodes"]
        }


def alert_events(found: Found) -> list[AlertEvent]:
    """The alerts of a window: each rendezvous reached opens one on each transit of the
    pair, naming the other truck; one that ended adds its whole duration as evidence
    and clears it (the officer still resolves it). A truck without a transit raises
    nothing of its own but is named in the other's."""
    events: list[AlertEvent] = []
    for actions, reached in ((("open",), found.opened), (("evidence", "clear"), found.ended)):
        for r in reached:
            for me in r.trucks:
                if me.mrn is not None:
                    events += [_event(action, r, me) for action in actions]
    return events


def _event(action: str, r: Rendezvous, me: Truck) -> AlertEvent:
    other = r.other(me.device_id)
    return AlertEvent(
        mrn=me.mrn or "",
        device_id=me.device_id,
        type=AlertType.RENDEZVOUS,
        severity=Severity.HIGH,
        action=action,
        time=r.start + timedelta(seconds=r.duration_s),
        lat=r.lat,
        lon=r.lon,
        key=f"{other.device_id}@{r.start.isoformat()}",
        details={
            "other_device": other.device_id,
            "other_mrn": other.mrn,
            "start": r.start.isoformat(),
            "duration_s": round(r.duration_s),
            "distance_m": round(r.distance_m, 1),
            "incident_code": 3,  # NCTS: transshipment
        },
    )
