"""Who am I, partner endpoints, the audit trail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from transit import audit
from transit.api.deps import Db, as_json
from transit.api.security import Caller
from transit.db import audit as audit_log
from transit.db import partners

router = APIRouter(tags=["admin"])


class PartnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    secret: str = Field(min_length=16, max_length=256, description="HMAC key of the notices")


@router.get("/me")
def me(who: Caller) -> dict[str, Any]:
    """The caller's role and scope."""
    return {"role": who.role, "office": who.office, "country": who.country, "key": who.prefix}


@router.get("/partners")
def list_partners(db: Db, who: Caller) -> dict[str, Any]:
    """Registered partner endpoints and their notices waiting."""
    return {"items": [as_json(r) for r in partners.list_all(db)]}


@router.put("/partners/{country}")
def put_partner(
    db: Db,
    who: Caller,
    country: Annotated[str, Path(pattern="^[A-Z]{2}$")],
    body: PartnerIn,
) -> dict[str, Any]:
    """Register (or replace) a partner country's notice endpoint and secret."""
    partners.put(db, country, str(body.url), body.secret.encode())
    audit.append(db, who.actor, "partner.endpoint", country, {"url": str(body.url)})
    db.commit()
    return {"country": country, "url": str(body.url)}


@router.get("/audit")
def get_audit(
    db: Db, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """The newest audit entries and whether the whole chain is intact."""
    rows = audit_log.newest(db, limit)
    verdict = audit.verify(db)
    return {
        "intact": verdict.ok,
        "problems": verdict.problems,
        "rows": verdict.rows,
        "head": f"{verdict.head_id}:{verdict.head_hash}" if verdict.head_id else None,
        "items": [as_json(r) for r in rows],
    }
