"""The ingest pipeline's pure part: decode, validate, check against corridors, run rules.

No IO: the worker hands it raw messages and the transits under way, and writes what
it returns. That keeps it testable without a broker or a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from transit.db.store import ActiveTransit, DeadLetter
from transit.devices import payload as wire
from transit.geofence.engine import Checked, GeofenceEngine
from transit.model import AlertEvent, AlertType, Fix, SealEvent
from transit.rules.deviation import DeviationRule, DeviationState, observe_stretch
from transit.rules.movement import (
    FixView,
    MovementState,
    Thresholds,
    TransitContext,
    observe_battery,
    observe_fixes,
    watchdog,
)
from transit.rules.seal import check_seal


@dataclass(frozen=True)
class RawMessage:
    """One MQTT message as it came off the wire."""

    topic: str
    payload: bytes
    sig: str | None = None


@dataclass
class BatchResult:
    """What one batch of messages produced."""

    fixes: list[Fix] = field(default_factory=list)
    seal_events: list[SealEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    # (tracker, reporting device, time, battery %) from telemetry and seal reports
    batteries: list[tuple[str, str, datetime, float]] = field(default_factory=list)


class Pipeline:
    """Decodes messages and runs the corridor rules for the transits under way."""

    def __init__(
        self, engine: GeofenceEngine | None = None, rule: DeviationRule | None = None
    ) -> None:
        self.engine = engine
        self.rule = rule or DeviationRule()
        self.transits: dict[str, ActiveTransit] = {}
        # Registered devices and their HMAC keys (None: the device signs nothing).
        self.devices: dict[str, bytes | None] = {}
        self.deviation: dict[str, DeviationState] = {}
        self.movement: dict[str, MovementState] = {}
        self.last_received: dict[str, datetime] = {}
        self.thresholds = Thresholds()

    def set_transits(
        self, transits: dict[str, ActiveTransit], open_alerts: set[tuple[str, str, str]]
    ) -> None:
        """Replace the transits under way; rule state is kept for those that remain."""
        self.transits = transits
        live = {t.mrn for t in transits.values()}
        self.deviation = {m: s for m, s in self.deviation.items() if m in live}
        self.movement = {m: s for m, s in self.movement.items() if m in live}
        for t in transits.values():
            if t.mrn not in self.deviation:
                is_open = (t.mrn, AlertType.ROUTE_DEVIATION.value, "") in open_alerts
                self.deviation[t.mrn] = DeviationState(alert_open=is_open)

    def tick(self, now: datetime) -> list[AlertEvent]:
        """The wall-clock watchdog over every transit under way: silence and overdue."""
        out: list[AlertEvent] = []
        for device, transit in self.transits.items():
            state = self.movement.setdefault(transit.mrn, MovementState())
            out += watchdog(
                self.thresholds,
                now,
                self._context(transit),
                state,
                self.last_received.get(device),
                transit.time_limit,
            )
        return out

    def process(self, messages: list[RawMessage], now: datetime | None = None) -> BatchResult:
        """Decode a batch; bad messages become dead letters, never exceptions."""
        out = BatchResult()
        for msg in messages:
            try:
                # Who sent it and whether it is authentic come before what it says.
                device_id, _ = wire.split_topic(msg.topic)
                if device_id not in self.devices:
                    raise wire.PayloadError("unknown_device", f"{device_id} is not registered")
                key = self.devices[device_id]
                if key is not None:
                    wire.verify(key, msg.topic, msg.payload, msg.sig)
                device_id, model = wire.decode(msg.topic, msg.payload)
            except wire.PayloadError as exc:
                out.dead_letters.append(
                    DeadLetter("mqtt", msg.topic, msg.payload, exc.reason, exc.detail)
                )
                continue
            if now is not None:
                self.last_received[device_id] = now
            if isinstance(model, wire.TelemetryV1):
                out.fixes.extend(wire.fixes_of(device_id, model))
                if model.battery_pct is not None:
                    t = model.fixes[-1].t
                    out.batteries.append((device_id, device_id, t, model.battery_pct))
            elif isinstance(model, wire.SealV1):
                event = wire.seal_event_of(device_id, model)
                out.seal_events.append(event)
                if event.battery_pct is not None:
                    out.batteries.append((device_id, event.seal_id, event.time, event.battery_pct))
                transit = self.transits.get(device_id)
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
        out.alerts.extend(self._check_corridors(out.fixes))
        for tracker, reporter, t, pct in out.batteries:
            transit = self.transits.get(tracker)
            if transit is not None:
                state = self.movement.setdefault(transit.mrn, MovementState())
                out.alerts += observe_battery(
                    self.thresholds, state, self._context(transit), t, reporter, pct
                )
        return out

    def _check_corridors(self, fixes: list[Fix]) -> list[AlertEvent]:
        mine = [f for f in fixes if f.device_id in self.transits]
        if not mine or self.engine is None:
            return []
        mine.sort(key=lambda f: (f.device_id, f.time))
        n = len(mine)
        lons = np.fromiter((f.lon for f in mine), dtype=np.float64, count=n)
        lats = np.fromiter((f.lat for f in mine), dtype=np.float64, count=n)
        speeds = np.fromiter(
            (np.nan if f.speed_kmh is None else f.speed_kmh for f in mine), np.float64, n
        )
        devices = np.asarray([f.device_id for f in mine], dtype=object)
        corridor = self.engine.indices([self.transits[f.device_id].corridor_id for f in mine])
        checked = self.engine.check(lons, lats, corridor, speeds)
        events: list[AlertEvent] = []
        bounds = np.flatnonzero(devices[1:] != devices[:-1]) + 1
        for start, end in zip([0, *bounds], [*bounds, n], strict=True):
            transit = self.transits[mine[start].device_id]
            state = self.deviation.setdefault(transit.mrn, DeviationState())
            events += self._movement(transit, mine[start:end], checked, start)
            events += observe_stretch(
                self.rule,
                state,
                mrn=transit.mrn,
                device_id=transit.tracker_id,
                times=[f.time for f in mine[start:end]],
                inside=checked.inside[start:end].tolist(),
                lats=lats[start:end].tolist(),
                lons=lons[start:end].tolist(),
                distance_m=checked.distance_m[start:end].tolist(),
            )
        return events

    @staticmethod
    def _context(transit: ActiveTransit) -> TransitContext:
        return TransitContext(
            transit.mrn,
            transit.tracker_id,
            frozenset(transit.countries),
            frozenset(transit.offices),
        )

    def _movement(
        self, transit: ActiveTransit, fixes: list[Fix], checked: Checked, offset: int
    ) -> list[AlertEvent]:
        """The movement rules over one transit's fixes of this batch (sorted by time).

        The rules module takes a plainly clean stretch in one step."""
        state = self.movement.setdefault(transit.mrn, MovementState())
        n = len(fixes)
        sl = slice(offset, offset + n)
        countries, zones = checked.country[sl], checked.zone[sl]
        views = [
            FixView(f.time, f.lat, f.lon, f.speed_kmh, countries[i], zones[i])
            for i, f in enumerate(fixes)
        ]
        return observe_fixes(self.thresholds, state, self._context(transit), views)
