"""API keys: list them, make one (shown once), revoke one. Admins only.

A key is named by its public id, the 8 hex digits after ``tk_``; no answer carries a
key's hash, and only the answer that makes a key carries its secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from transit import keys
from transit.api.deps import Db, field_error
from transit.api.security import Caller
from transit.model import OFFICE_REF

router = APIRouter(tags=["keys"])
KeyId = Annotated[str, Path(pattern=keys.KEY_ID.pattern, description="the 8 hex digits after tk_")]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["admin", "officer", "control_room", "partner"]
    office: str | None = Field(
        default=None, pattern=OFFICE_REF.pattern, description="an officer's office"
    )
    country: str | None = Field(
        default=None, pattern="^[A-Z]{2}$", description="a partner's country (ISO alpha-2)"
    )
    label: str = Field(default="", max_length=200, description="who holds it")
    expires_at: AwareDatetime | None = Field(
        default=None, description="when the key stops working; none: it does not expire"
    )
    expires_in_days: float | None = Field(
        default=None, gt=0, le=36_500, description="or: how many days from now it works"
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyIn:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500, description="kept in the audit log")


@router.get("/keys")
def list_keys(
    db: Db,
    who: Caller,
    include_inactive: Annotated[
        bool, Query(alias="all", description="revoked and expired keys too")
    ] = False,
) -> dict[str, Any]:
    """The API keys (active ones, or all): id, role, scope, label, who made each and
    when, expiry, revocation, last use. Never a hash or a secret."""
    items = [k.as_dict() for k in keys.list_keys(db, include_inactive)]
    return {"count": len(items), "items": items}


@router.post("/keys", status_code=201)
def create_key(db: Db, who: Caller, body: KeyIn) -> dict[str, Any]:
    """Make a key; the answer carries it (``key``) this once, it is stored hashed."""
    try:
        expires_at = body.expires_at or keys.expiry(datetime.now(UTC), body.expires_in_days)
        key = keys.create(
            db, body.role, body.office, body.country, body.label, who.actor, expires_at
        )
    except keys.KeyRequestError as exc:
        raise field_error(exc.field, str(exc)) from None
    db.commit()
    info = keys.get(db, keys.key_id(key))
    assert info is not None
    return {**info.as_dict(), "key": key}


@router.post("/keys/{key_id}/revoke")
def revoke_key(db: Db, who: Caller, key_id: KeyId, body: RevokeIn | None = None) -> dict[str, Any]:
    """Revoke a key: its next request is refused (401), in every API process, and a
    live feed open with it is closed within about a second and a half."""
    try:
        info = keys.revoke(db, key_id, who.actor, body.reason if body else "")
    except LookupError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    db.commit()
    return info.as_dict()
