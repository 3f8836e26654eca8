"""Reference data: devices and seals, offices, corridors (GeoJSON in and out)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from transit import audit, provision
from transit.api.deps import Db, as_json, field_error
from transit.api.security import Caller
from transit.db import corridors, devices, offices, seals
from transit.geofence.corridor import Office, load_geojson
from transit.ingest.pipeline import rules_config
from transit.model import OFFICE_REF

router = APIRouter(tags=["reference"])
DeviceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    kind: Literal["tracker", "seal", "edge"]
    signed: bool = Field(default=True, description="give the device an HMAC key (shown once)")


class SealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seal_id: str = Field(min_length=1, max_length=64)
    manufacturer: str = Field(min_length=1, max_length=64)
    serial: str = Field(min_length=1, max_length=64)
    tracker_id: str | None = Field(default=None, max_length=64)


class OfficeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: str = Field(pattern=OFFICE_REF.pattern)
    name: str = Field(min_length=1, max_length=200)
    country: str = Field(pattern="^[A-Z]{2}$")
    roles: list[Literal["departure", "transit", "destination", "exit", "parking"]] = Field(
        min_length=1
    )
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    radius_m: float = Field(default=500, gt=0, le=50_000)


class FeatureCollection(BaseModel):
    """A GeoJSON (RFC 7946) FeatureCollection of corridors, offices and parkings."""

    model_config = ConfigDict(extra="allow")
    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(max_length=10_000)


def _sync_broker(request: Request, db: Db) -> None:
    """A new or re-keyed device needs the broker's password file and ACL rewritten."""
    settings = request.app.state.settings
    try:
        provision.sync_broker(db, settings)
    except (OSError, RuntimeError) as exc:  # the broker may not run where the API does
        request.app.state.log.warning("broker not reloaded: %s", exc)


@router.get("/devices")
def list_devices(db: Db, who: Caller) -> dict[str, Any]:
    """Registered devices, when each was last heard and its battery."""
    rows = devices.list_all(db)
    return {"count": len(rows), "items": [as_json(r) for r in rows]}


@router.post("/devices", status_code=201)
def register_device(db: Db, who: Caller, body: DeviceIn, request: Request) -> dict[str, Any]:
    """Register a device; a signed one gets its HMAC key, shown this once."""
    if devices.exists(db, body.device_id):
        raise field_error(
            "device_id", f"{body.device_id} is registered already (rotate its key instead)"
        )
    key = secrets.token_bytes(32) if body.signed else None
    devices.register(db, body.device_id, body.kind, key)
    audit.append(db, who.actor, "device.register", body.device_id, {"kind": body.kind})
    db.commit()
    _sync_broker(request, db)
    return {"device_id": body.device_id, "kind": body.kind, "hmac_key": key.hex() if key else None}


@router.post("/devices/{device_id}/rotate-key")
def rotate_key(db: Db, who: Caller, device_id: DeviceId) -> dict[str, Any]:
    """Give a device a new HMAC key (shown this once); the old one stops working."""
    key = secrets.token_bytes(32)
    if not devices.rotate_key(db, device_id, key):
        raise HTTPException(404, detail=f"no device {device_id}")
    audit.append(db, who.actor, "device.rotate_key", device_id, {})
    db.commit()
    return {"device_id": device_id, "hmac_key": key.hex()}


@router.get("/seals")
def list_seals(db: Db, who: Caller) -> dict[str, Any]:
    """Registered seals, their tracker and whether they are armed."""
    rows = seals.list_all(db)
    return {"count": len(rows), "items": [as_json(r) for r in rows]}


@router.post("/seals", status_code=201)
def register_seal(db: Db, who: Caller, body: SealIn) -> dict[str, Any]:
    """Register an e-seal (ISO 18185: manufacturer and serial)."""
    if body.tracker_id is not None and not devices.exists(db, body.tracker_id):
        raise field_error("tracker_id", f"no device {body.tracker_id}")
    seals.register(db, body.seal_id, body.manufacturer, body.serial, body.tracker_id)
    audit.append(db, who.actor, "seal.register", body.seal_id, body.model_dump())
    db.commit()
    return body.model_dump()


@router.get("/offices")
def list_offices(db: Db, who: Caller) -> dict[str, Any]:
    """Customs offices and parking zones."""
    rows = offices.list_rows(db)
    return {"count": len(rows), "items": rows}


@router.post("/offices", status_code=201)
def upsert_office(db: Db, who: Caller, body: OfficeIn) -> dict[str, Any]:
    """Create or update an office (or a parking zone, role ``parking``)."""
    offices.upsert(
        db,
        Office(
            body.ref,
            body.name,
            body.country,
            tuple(body.roles),
            body.lon,
            body.lat,
            body.radius_m,
        ),
    )
    audit.append(db, who.actor, "office.upsert", body.ref, body.model_dump())
    db.commit()
    return body.model_dump()


@router.get("/corridors")
def list_corridors(db: Db, who: Caller) -> dict[str, Any]:
    """Every corridor as a GeoJSON FeatureCollection (routes, widths, countries)."""
    features = [c.to_feature() for c in corridors.list_all(db)]
    return {"type": "FeatureCollection", "features": features}


@router.get("/corridors/{corridor_id}")
def get_corridor(
    db: Db, who: Caller, corridor_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """One corridor as a GeoJSON Feature."""
    corridor = corridors.get(db, corridor_id)
    if corridor is None:
        raise HTTPException(404, detail=f"no corridor {corridor_id}")
    return corridor.to_feature()


@router.post("/corridors")
def import_corridors(db: Db, who: Caller, body: FeatureCollection) -> dict[str, Any]:
    """Import corridors, offices and parkings from GeoJSON (the same as
    ``transit geo import``); a corridor's ``properties.thresholds`` are checked."""
    doc = body.model_dump()
    try:
        found, _ = load_geojson(doc)
        for c in found:
            rules_config(dict(c.properties.get("thresholds") or {}))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise field_error("features", str(exc)) from None
    counts = provision.import_geojson(db, doc)
    audit.append(
        db, who.actor, "geo.import", "corridors", {"corridors": counts[0], "offices": counts[1]}
    )
    db.commit()
    return {"corridors": counts[0], "offices": counts[1]}
