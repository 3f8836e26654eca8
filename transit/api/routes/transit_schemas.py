"""The bodies the transit routes accept: a declaration, a closure, an incident, a
cancellation; and the bounds of a declaration's time limit.

The examples are built from the bundled ACTS network (``transit geo import``), so a
declaration copied from the API docs passes every check once its tracker is registered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from transit.ingest.pipeline import rules_config
from transit.model import MRN_RE, OFFICE_REF, is_valid_mrn, make_mrn

# NCTS practice: the office of departure sets the time limit from the journey's
# prescribed duration, in days. 90 days is far beyond any overland transit, so a limit
# further ahead is a typing error (a wrong year or month), refused before it keeps the
# overdue watchdog quiet for months.
MAX_TIME_LIMIT_DAYS = 90
EXAMPLE_MRN = make_mrn(26, "MY", "S001T0000003")  # 26MYS001T0000003A6

MrnPath = Path(
    min_length=18,
    max_length=18,
    pattern=MRN_RE.pattern,
    description="The MRN",
    examples=[EXAMPLE_MRN],
)
OfficeRef = Annotated[str, Field(pattern=OFFICE_REF.pattern, description="8-character office")]
Country = Annotated[str, Field(pattern="^[A-Z]{2}$", description="ISO 3166 alpha-2")]


def time_limit_problem(time_limit: datetime, now: datetime) -> str | None:
    """What is wrong with a declaration's time limit at ``now``, or None."""
    if time_limit <= now:
        return (
            f"the time limit {time_limit.isoformat()} is in the past"
            f" (now is {now.isoformat(timespec='seconds')})"
        )
    if time_limit > now + timedelta(days=MAX_TIME_LIMIT_DAYS):
        return (
            f"the time limit {time_limit.isoformat()} is more than {MAX_TIME_LIMIT_DAYS} days ahead"
        )
    return None


def _declaration_example(schema: dict[str, Any]) -> None:
    """A whole declaration on the bundled MY-TH-BKK corridor; its time limit is two
    days after the document is made, so it stays within the bounds."""
    limit = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    schema["examples"] = [
        {
            "mrn": EXAMPLE_MRN,
            "tracker_id": "TRK-0001",
            "seal_ids": ["TRK-0001-S1", "TRK-0001-S2"],
            "corridor_id": "MY-TH-BKK",
            "office_departure": "MYKUL001",
            "offices_transit": ["MYBKH001", "THSDO001"],
            "office_destination": "THBKK001",
            "countries": ["MY", "TH"],
            "time_limit": limit.isoformat(),
            "vehicle": "WXY 1234",
            "driver": {"name": "Ahmad Rahman", "phone": "+60 12 345 6789"},
            "guarantee": {"reference": "GRN-2026-000123", "amount": 25000, "currency": "MYR"},
            "thresholds": {"stop_limit_s": 1800},
            "trader": "MY-TIN-200401012345",
        }
    ]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=3, max_length=40)


class Guarantee(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, max_length=40)
    amount: float = Field(ge=0)
    currency: str = Field(pattern="^[A-Z]{3}$")


class TransitIn(BaseModel):
    """A transit declaration. Beyond its shape, the API checks it against the reference
    data: the offices exist, lie in the declared countries and within reach of the
    corridor, the corridor's countries are declared, and the time limit is ahead, at
    most 90 days."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_declaration_example)
    mrn: str = Field(min_length=18, max_length=18, examples=[EXAMPLE_MRN])
    tracker_id: str = Field(min_length=1, max_length=64)
    seal_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(max_length=20)
    corridor_id: str = Field(min_length=1, max_length=64)
    office_departure: OfficeRef
    offices_transit: list[OfficeRef] = Field(default_factory=list, max_length=9)
    office_destination: OfficeRef
    countries: list[Country] = Field(
        min_length=1, max_length=10, description="The itinerary's countries, in order"
    )
    time_limit: AwareDatetime = Field(
        description=f"When the goods must be presented at destination: ahead, at most"
        f" {MAX_TIME_LIMIT_DAYS} days"
    )
    vehicle: str | None = Field(default=None, max_length=40)
    driver: Contact | None = None
    guarantee: Guarantee | None = None
    thresholds: dict[str, float] | None = None
    trader: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="The holder of the transit procedure (its TIN or EORI number): its"
        " earlier incidents count in the transit's risk score",
    )

    @field_validator("mrn")
    @classmethod
    def _mrn(cls, v: str) -> str:
        if not MRN_RE.match(v):
            raise ValueError(
                "an MRN is 2 digits (year), 2 letters (country), 12 letters or digits,"
                " a letter and a check digit"
            )
        if not is_valid_mrn(v):
            raise ValueError("the check digit (the 18th character) is wrong")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v:
            rules_config(v)
        return v


class InspectionIn(BaseModel):
    """Whether the exit officer inspected the goods and whether anything was found: it
    is kept with the risk score the officer saw, and counts in the history of the
    vehicle, tracker and trader."""

    model_config = ConfigDict(extra="forbid")
    inspected: bool
    found: bool = Field(
        default=False,
        description="Something was found; the transit then closes with an incident, the"
        " note being the finding unless one is given",
    )
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _found_needs_inspection(self) -> InspectionIn:
        if self.found and not self.inspected:
            raise ValueError("found: only an inspection finds something (inspected is false)")
        if self.found and not (self.note or "").strip():
            raise ValueError("note: say what the inspection found")
        return self


class CloseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inspection": {"inspected": True, "found": False, "note": "seals intact"}},
                {
                    "finding": "two pallets missing",
                    "incident_code": 4,
                    "inspection": {"inspected": True, "found": True, "note": "two pallets"},
                },
            ]
        },
    )
    finding: str | None = Field(
        default=None,
        max_length=2000,
        description="What the officer found; given, the transit closes with an incident",
    )
    incident_code: int | None = Field(default=None, ge=1, le=6)
    inspection: InspectionIn | None = Field(
        default=None, description="Whether the goods were inspected and anything found"
    )


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: int = Field(ge=1, le=6, description="NCTS CL019: 1 deviation ... 6 other")
    description: str = Field(min_length=1, max_length=2000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    seals_affected: list[str] = Field(default_factory=list, max_length=20)
    new_vehicle: str | None = Field(default=None, max_length=40)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
