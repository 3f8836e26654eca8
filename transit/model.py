"""The domain's value objects: fixes, seal events, alerts. Standard library and pydantic only."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

OFFICE_REF = re.compile(r"^[A-Z]{2}[A-Z0-9]{6}$")
MRN_RE = re.compile(r"^\d{2}[A-Z]{2}[A-Z0-9]{12}[A-Z]\d$")


class Fix(BaseModel):
    """One position report of a tracker, in event time (UTC), as the tracker sent it:
    whether it is believed (a position in range, a sane time, ...) is for the ingest
    filters to say (``transit/rules/filters.py``)."""

    model_config = ConfigDict(frozen=True)

    device_id: str
    seq: int
    idx: int = 0
    time: datetime
    lat: float = Field(allow_inf_nan=False)
    lon: float = Field(allow_inf_nan=False)
    speed_kmh: float | None = None
    course_deg: float | None = None
    hdop: float | None = None


class SealStatus(StrEnum):
    """Status of an electronic seal, after ISO 18185 (plus tamper, as seals report it)."""

    SEALED = "sealed"
    OPENED = "opened"
    TAMPERED = "tampered"


class SealEvent(BaseModel):
    """A seal's report: its status and event counter at a time."""

    model_config = ConfigDict(frozen=True)

    device_id: str
    seq: int
    seal_id: str
    time: datetime
    status: SealStatus
    counter: int = 0
    battery_pct: float | None = None
    lat: float | None = None
    lon: float | None = None


class AlertType(StrEnum):
    """Every alert the system raises; see the architecture guide."""

    SEAL_OPENED = "seal_opened"
    SEAL_TAMPERED = "seal_tampered"
    SEAL_MISMATCH = "seal_mismatch"
    ROUTE_DEVIATION = "route_deviation"
    UNAUTHORIZED_STOP = "unauthorized_stop"
    SIGNAL_LOST = "signal_lost"
    OVERDUE = "overdue"
    GPS_JUMP = "gps_jump"
    LOW_BATTERY = "low_battery"
    WRONG_OFFICE = "wrong_office"
    UNEXPECTED_COUNTRY = "unexpected_country"
    RENDEZVOUS = "rendezvous"  # stopped beside another truck: transshipment (incident 3)


class Severity(StrEnum):
    """How urgently a control room must act."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlertEvent(BaseModel):
    """What a rule decides: open a new alert, clear the open one for a condition, or
    attach later evidence to it."""

    model_config = ConfigDict(frozen=True)

    mrn: str
    device_id: str
    type: AlertType
    severity: Severity
    # open a condition's alert, clear it, or attach later evidence to the open one
    action: str = Field(pattern="^(open|clear|evidence)$")
    time: datetime
    lat: float | None = None
    lon: float | None = None
    key: str = ""
    details: dict[str, object] = Field(default_factory=dict)


def mrn_check_digit(first17: str) -> int:
    """ISO 6346 check digit over the first 17 characters of an MRN.

    Letters take the ISO 6346 values (A=10, skipping multiples of 11), each
    character is weighted by 2**position, and the sum modulo 11 (10 -> 0) is the digit.
    """
    values: dict[str, int] = {str(d): d for d in range(10)}
    v = 10
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if v % 11 == 0:
            v += 1
        values[letter] = v
        v += 1
    total: int = sum(values[c] * (2**i) for i, c in enumerate(first17))
    return total % 11 % 10


def is_valid_mrn(mrn: str) -> bool:
    """Whether an MRN has the NCTS shape and a correct check digit."""
    return bool(MRN_RE.match(mrn)) and mrn_check_digit(mrn[:17]) == int(mrn[17])


def make_mrn(year: int, country: str, serial: str, procedure: str = "A") -> str:
    """Build an MRN from its parts, computing the check digit."""
    body = f"{year % 100:02d}{country}{serial.upper():0>12}{procedure}"
    return body + str(mrn_check_digit(body))
