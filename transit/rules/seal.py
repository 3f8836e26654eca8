"""Seal rules: an armed seal that reports opened or tampered, or an undeclared seal id.

An opening is authorised only inside the zone of the transit's office of destination
(where the officer opens the doors); anywhere else while the transit is under way it
is an incident. A tamper report is an incident wherever it happens. One live alert
per seal and condition.
"""

from __future__ import annotations

from transit.model import AlertEvent, AlertType, SealEvent, SealStatus, Severity


def check_seal(
    mrn: str, declared: tuple[str, ...], event: SealEvent, at_destination: bool = False
) -> AlertEvent | None:
    """The alert a seal report raises for a transit under way, if any."""
    details: dict[str, object] = {"seal_id": event.seal_id, "counter": event.counter}
    if event.seal_id not in declared:
        kind, severity = AlertType.SEAL_MISMATCH, Severity.HIGH
        details["declared"] = list(declared)
    elif event.status is SealStatus.TAMPERED:
        kind, severity = AlertType.SEAL_TAMPERED, Severity.CRITICAL
    elif event.status is SealStatus.OPENED and not at_destination:
        kind, severity = AlertType.SEAL_OPENED, Severity.CRITICAL
    else:
        return None
    return AlertEvent(
        mrn=mrn,
        device_id=event.device_id,
        type=kind,
        severity=severity,
        action="open",
        time=event.time,
        lat=event.lat,
        lon=event.lon,
        key=event.seal_id,
        details=details,
    )
