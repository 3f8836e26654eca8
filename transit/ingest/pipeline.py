"""The ingest pipeline's pure part: decode, validate, check against corridors, run rules.

No IO: the worker hands it raw messages and the transits under way, and writes what
it returns. That keeps it testable without a broker or a database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from transit.devices import payload as wire
from transit.geofence.engine import GeofenceEngine
from transit.ingest import journey
from transit.ingest.types import ActiveTransit, DeadLetter
from transit.lifecycle import EN_ROUTE, Action, LifecycleEvent, State
from transit.model import AlertEvent, AlertType, Fix, SealEvent
from transit.rules.batch import TransitRules, observe_batch, stop_speeds
from transit.rules.deviation import DeviationState
from transit.rules.filters import FilteredFix, FixFilters, Screened, find_jumps, screen_fixes
from transit.rules.movement import (
    MovementState,
    Thresholds,
    TransitContext,
    observe_battery,
    watchdog,
)
from transit.rules.seal import check_seal
from transit.rules.state import RuleState

log = logging.getLogger(__name__)

THRESHOLD_KEYS = frozenset(f.name for f in fields(Thresholds))


def rules_config(overrides: dict[str, float], base: Thresholds | None = None) -> Thresholds:
    """Thresholds with a corridor's or transit's overrides applied.

    Keys are the fields of :class:`Thresholds`; an unknown key or a value that is not
    a positive number is a ValueError naming it (the API checks it when a transit or
    corridor is stored)."""
    th: dict[str, float] = {}
    for key, value in overrides.items():
        if key not in THRESHOLD_KEYS:
            raise ValueError(f"thresholds.{key}: unknown threshold")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"thresholds.{key}: must be a positive number, not {value!r}")
        th[key] = float(value)
    return replace(base or Thresholds(), **th)


@dataclass(frozen=True)
class RawMessage:
    """One MQTT message as it came off the wire."""

    topic: str
    payload: bytes
    sig: str | None = None


@dataclass(frozen=True)
class Decoded:
    """A message that passed the boundary: its sender, seq and what it says."""

    raw: RawMessage
    device_id: str
    seq: int | None  # None: a presence status, which has none
    model: wire.TelemetryV1 | wire.SealV1 | wire.StatusV1
    kept: wire.SignedMessage | None  # as signed, kept to verify it again


@dataclass
class BatchResult:
    """What one batch of messages produced."""

    fixes: list[Fix] = field(default_factory=list)
    seal_events: list[SealEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # fixes the filters kept apart (never stored with the others, drawn or ruled on)
    filtered: list[FilteredFix] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    # (tracker, reporting device, time, battery %) from telemetry and seal reports
    batteries: list[tuple[str, str, datetime, float]] = field(default_factory=list)
    # departures, border crossings, arrivals found in the fixes
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    # every accepted telemetry and seal message as signed, kept to verify it again
    messages: list[wire.SignedMessage] = field(default_factory=list)


class Pipeline:
    """Decodes messages and runs the corridor rules for the transits under way."""

    def __init__(self, engine: GeofenceEngine | None = None) -> None:
        self.engine = engine
        self.transits: dict[str, ActiveTransit] = {}
        # Registered devices and their HMAC keys (None: the device signs nothing).
        self.devices: dict[str, bytes | None] = {}
        self.rules: dict[str, TransitRules] = {}  # by MRN
        self.last_received: dict[str, datetime] = {}
        self.thresholds = Thresholds()
        self.filters = FixFilters()
        # Each device's newest accepted fix (epoch seconds): the stale filter's reference.
        self.newest: dict[str, float] = {}
        # Conditions whose alert is open in the database, by MRN: (type, key).
        self._held: dict[str, set[tuple[str, str]]] = {}

    def set_transits(
        self, transits: dict[str, ActiveTransit], open_alerts: set[tuple[str, str, str]]
    ) -> None:
        """Replace the transits under way; rule state is kept for those that remain."""
        self.transits = transits
        self._held = {}
        for mrn, kind, key in open_alerts:
            self._held.setdefault(mrn, set()).add((kind, key))
        live = {t.mrn for t in transits.values()}
        self.rules = {m: r for m, r in self.rules.items() if m in live}
        for t in transits.values():
            if t.mrn not in self.rules:
                self.rules[t.mrn] = self._new_rules(t)

    def set_newest(self, times: dict[str, datetime]) -> None:
        """Each device's newest stored fix, as the database has it."""
        self.newest = {d: t.timestamp() for d, t in times.items()}

    def reset_state(self) -> None:
        """Forget rule state (a batch was rolled back): it is rebuilt from the stream."""
        self.rules = {}
        self.newest = {}
        for t in self.transits.values():
            self.rules[t.mrn] = self._new_rules(t)

    def initial_state(self, t: ActiveTransit, open_conditions: set[tuple[str, str]]) -> RuleState:
        """The rule state of a transit the rules take over: nothing seen, and the
        conditions whose alerts are open in the database held open (neither raised
        again nor forgotten when they clear)."""
        held = set(open_conditions)
        deviation = (AlertType.ROUTE_DEVIATION.value, "")
        is_open = deviation in held
        held.discard(deviation)
        return RuleState(DeviationState(alert_open=is_open), MovementState(open_keys=held))

    def take_over(self, t: ActiveTransit, state: RuleState) -> None:
        """Follow ``t`` from ``state`` (as stored), for the next :meth:`evaluate`."""
        self.transits[t.tracker_id] = t
        self.rules[t.mrn] = self._new_rules(t, state)

    def state_of(self, mrn: str) -> RuleState:
        """What the rules remember of a transit now (to be stored)."""
        r = self.rules[mrn]
        return RuleState(r.deviation, r.movement)

    def _new_rules(self, t: ActiveTransit, state: RuleState | None = None) -> TransitRules:
        try:
            th = rules_config(t.thresholds, self.thresholds)
        except ValueError as exc:  # stored before the API checked them: defaults, loudly
            log.warning("transit %s: %s; default thresholds used", t.mrn, exc)
            th = self.thresholds
        ids = self.engine.country_ids(t.countries) if self.engine else set()
        if state is None:
            state = self.initial_state(t, self._held.get(t.mrn, set()))
        return TransitRules(
            ctx=self._context(t),
            thresholds=th,
            deviation=state.deviation,
            movement=state.movement,
            country_ids=frozenset(ids),
        )

    def _rules_of(self, transit: ActiveTransit) -> TransitRules:
        r = self.rules.get(transit.mrn)
        if r is None:
            r = self.rules[transit.mrn] = self._new_rules(transit)
        return r

    def tick(
        self,
        now: datetime,
        lifecycle: list[LifecycleEvent] | None = None,
        devices: list[str] | None = None,
    ) -> list[AlertEvent]:
        """The wall-clock watchdog over every transit under way: silence and overdue.

        An overdue transit (not arrived by its time limit) also goes to the state
        ``overdue`` where the lifecycle allows it, with an enquiry opened: that goes
        into ``lifecycle``. ``devices``: only these trackers' transits."""
        out: list[AlertEvent] = []
        watched = self.transits if devices is None else {d: self.transits[d] for d in devices}
        for device, transit in list(watched.items()):
            r = self._rules_of(transit)
            found = watchdog(
                r.thresholds,
                now,
                r.ctx,
                r.movement,
                self.last_received.get(device),
                transit.time_limit if State(transit.status) in EN_ROUTE else None,
            )
            out += found
            if lifecycle is not None and any(a.type is AlertType.OVERDUE for a in found):
                self.transits[device] = journey.step(transit, Action.OVERDUE, now, {}, lifecycle)
        return out

    def process(self, messages: list[RawMessage], now: datetime | None = None) -> BatchResult:
        """Decode and evaluate a batch; bad messages become dead letters, never
        exceptions (:meth:`decode`, then :meth:`evaluate`)."""
        decoded = self.decode(messages, now)
        out = self.evaluate([d for d in decoded if isinstance(d, Decoded)], now)
        out.dead_letters = [d for d in decoded if isinstance(d, DeadLetter)]
        return out

    def decode(
        self, messages: list[RawMessage], now: datetime | None = None
    ) -> list[Decoded | DeadLetter]:
        """Who sent each message, whether it is authentic, and what it says: one
        :class:`Decoded` or :class:`DeadLetter` per message, in order. Needs no state."""
        out: list[Decoded | DeadLetter] = []
        for msg in messages:
            opened = None
            try:
                # Who sent it and whether it is authentic come before what it says.
                device_id, _ = wire.split_topic(msg.topic)
                if device_id not in self.devices:
                    raise wire.PayloadError("unknown_device", f"{device_id} is not registered")
                # signed bytes and signature: the payload and user property, or an envelope
                opened = wire.open_message(msg.payload, msg.sig)
                key = self.devices[device_id]
                if key is not None:
                    wire.verify(key, msg.topic, opened.body, opened.sig)
                device_id, model = wire.decode(msg.topic, opened.body)
            except wire.PayloadError as exc:
                sig = opened.sig if opened else msg.sig
                out.append(DeadLetter("mqtt", msg.topic, msg.payload, exc.reason, exc.detail, sig))
                continue
            if now is not None:
                self.last_received[device_id] = now
            kept = wire.signed_message(device_id, msg.topic, opened, model)
            seq = None if isinstance(model, wire.StatusV1) else model.seq
            out.append(Decoded(msg, device_id, seq, model, kept))
        return out

    def evaluate(
        self, messages: list[Decoded], now: datetime | None = None, ruled: bool = True
    ) -> BatchResult:
        """Run the filters and rules over decoded messages, in the order given (a
        device's in seq order). ``ruled`` False: stored without the transits' rules."""
        out = BatchResult()
        transits = self.transits if ruled else {}
        for d in messages:
            device_id, model = d.device_id, d.model
            if d.kept is not None:
                out.messages.append(d.kept)
            if isinstance(model, wire.TelemetryV1):
                out.fixes.extend(wire.fixes_of(device_id, model))
                if model.battery_pct is not None:
                    t = model.fixes[-1].t
                    if now is not None and t.timestamp() > now.timestamp() + self.filters.future_s:
                        t = now  # the reading is now; its fix's time is filtered as future
                    out.batteries.append((device_id, device_id, t, model.battery_pct))
            elif isinstance(model, wire.SealV1):
                event = wire.seal_event_of(device_id, model)
                out.seal_events.append(event)
                if event.battery_pct is not None:
                    out.batteries.append((device_id, event.seal_id, event.time, event.battery_pct))
                transit = transits.get(device_id)
                alert = None
                if transit is not None:
                    at_destination = bool(
                        self.engine is not None
                        and event.lat is not None
                        and event.lon is not None
                        and transit.offices
                        and self.engine.zone_at(event.lon, event.lat) == transit.offices[-1]
                    )
                    alert = check_seal(transit.mrn, transit.seal_ids, event, at_destination)
                if alert is not None:
                    out.alerts.append(alert)
            else:
                out.statuses[device_id] = model.state
        if out.fixes:
            screened = screen_fixes(out.fixes, now, self.newest, self.filters)
            self.newest.update(screened.newest)
            out.fixes = screened.accepted()
            out.filtered = screened.filtered(self.filters, now)
            events, jumped = self._check_corridors(screened, out.lifecycle, transits)
            out.alerts.extend(events)
            if jumped:
                gone = {id(j.fix) for j in jumped}
                out.fixes = [f for f in out.fixes if id(f) not in gone]
                out.filtered += jumped
        for tracker, reporter, t, pct in out.batteries:
            transit = transits.get(tracker)
            if transit is not None:
                r = self._rules_of(transit)
                out.alerts += observe_battery(r.thresholds, r.movement, r.ctx, t, reporter, pct)
        return out

    def _check_corridors(
        self, sc: Screened, lifecycle: list[LifecycleEvent], under_way: dict[str, ActiveTransit]
    ) -> tuple[list[AlertEvent], list[FilteredFix]]:
        """The accepted fixes of transits under way through the jump filter, the
        geofence engine, the rules and the lifecycle. Returns the alerts and the fixes
        that jumped (filtered: they go no further)."""
        in_transit = np.fromiter((d in under_way for d in sc.names), bool, len(sc.names))
        idx = np.flatnonzero((sc.code == 0) & in_transit[sc.device])
        if not len(idx) or self.engine is None:
            return [], []
        # By device (in name order), then by event time.
        rank = np.argsort(np.argsort(np.asarray(sc.names)))
        order = idx[np.lexsort((sc.seconds[idx], rank[sc.device[idx]]))]
        mine, starts, transits = self._layout(sc, order)
        rules = [self._rules_of(t) for t in transits]
        lons, lats, seconds = sc.lons[order], sc.lats[order], sc.seconds[order]
        times = [f.time for f in mine]
        jumps, events = find_jumps(
            lons, lats, seconds, times, np.asarray(starts, dtype=np.int64), rules
        )
        jumped = [FilteredFix(mine[i], "jump", detail) for i, detail in jumps.items()]
        if jumps:
            # Jumped fixes go no further: the batch is laid out again without them.
            keep = np.ones(len(order), dtype=bool)
            keep[list(jumps)] = False
            order = order[keep]
            if not len(order):
                return events, jumped
            mine, starts, transits = self._layout(sc, order)
            rules = [self._rules_of(t) for t in transits]
            lons, lats, seconds = sc.lons[order], sc.lats[order], sc.seconds[order]
            times = [f.time for f in mine]
        n = len(mine)
        speeds = sc.speeds[order]
        corridor = np.repeat(
            self.engine.indices([t.corridor_id for t in transits]),
            np.diff(np.r_[starts, n]),
        )
        stops = stop_speeds(rules, np.asarray(starts, dtype=np.int64), n)
        checked = self.engine.check(lons, lats, corridor, speeds, stops)
        before = [r.movement.last for r in rules]
        events += observe_batch(
            checked,
            lons,
            lats,
            speeds,
            seconds,
            times,
            np.asarray(starts, dtype=np.int64),
            rules,
        )
        ends = [*starts[1:], n]
        for g, t in enumerate(transits):
            fixes = journey.Stretch(checked, lons, lats, times, starts[g], ends[g], before[g])
            moved, found = journey.progress(t, self.engine, fixes)
            lifecycle += found
            if moved is not t:
                self.transits[t.tracker_id] = moved
        return events, jumped

    def _layout(
        self, sc: Screened, order: NDArray[np.int64]
    ) -> tuple[list[Fix], list[int], list[ActiveTransit]]:
        """The fixes at ``order`` (grouped by device), where each device's group
        starts, and each group's transit."""
        devices = sc.device[order]
        starts = [0, *(np.flatnonzero(devices[1:] != devices[:-1]) + 1).tolist()]
        transits = [self.transits[sc.names[int(devices[s])]] for s in starts]
        return [sc.fixes[i] for i in order.tolist()], starts, transits

    def _context(self, transit: ActiveTransit) -> TransitContext:
        return TransitContext(
            transit.mrn,
            transit.tracker_id,
            frozenset(transit.countries),
            frozenset(transit.offices),
            self.engine.parkings if self.engine is not None else frozenset(),
        )
