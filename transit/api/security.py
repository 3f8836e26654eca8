"""Who may call what: API keys with roles, and one permission table for every route.

``PERMISSIONS`` maps each route of ``/api/v1`` (method and path template) to the roles
allowed on it; a route missing from the table is refused to everyone (and a test
walks every route with every role against this table). What a caller sees within a
route (an officer's office, a partner's country) is
:class:`transit.db.visibility.Visibility`'s to say, in one place for every reader.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from transit.api.deps import Db
from transit.keys import KeyRefused, Principal, authenticate

ADMIN, OFFICER, CONTROL, PARTNER = "admin", "officer", "control_room", "partner"
EVERYONE = frozenset({ADMIN, OFFICER, CONTROL, PARTNER})
STAFF = frozenset({ADMIN, OFFICER, CONTROL})

PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/me"): EVERYONE,
    ("GET", "/api/v1/devices"): frozenset({ADMIN, CONTROL}),
    ("POST", "/api/v1/devices"): frozenset({ADMIN}),
    ("POST", "/api/v1/devices/{device_id}/rotate-key"): frozenset({ADMIN}),
    ("GET", "/api/v1/devices/{device_id}/filtered-fixes"): frozenset({ADMIN, CONTROL}),
    ("GET", "/api/v1/devices/{device_id}/messages/{seq}"): frozenset({ADMIN, CONTROL}),
    ("GET", "/api/v1/seals"): frozenset({ADMIN, CONTROL}),
    ("POST", "/api/v1/seals"): frozenset({ADMIN}),
    ("GET", "/api/v1/offices"): EVERYONE,
    ("POST", "/api/v1/offices"): frozenset({ADMIN}),
    ("GET", "/api/v1/corridors"): EVERYONE,
    ("GET", "/api/v1/corridors/{corridor_id}"): EVERYONE,
    ("POST", "/api/v1/corridors"): frozenset({ADMIN}),
    ("GET", "/api/v1/transits"): EVERYONE,
    ("POST", "/api/v1/transits"): frozenset({ADMIN, OFFICER}),
    ("GET", "/api/v1/transits/{mrn}"): EVERYONE,
    ("GET", "/api/v1/transits/{mrn}/track"): STAFF,
    ("GET", "/api/v1/transits/{mrn}/filtered-fixes"): STAFF,
    ("GET", "/api/v1/transits/{mrn}/track.gpx"): STAFF,
    ("GET", "/api/v1/transits/{mrn}/track.csv"): STAFF,
    ("GET", "/api/v1/transits/{mrn}/report"): STAFF,
    ("GET", "/api/v1/transits/{mrn}/events"): STAFF,
    ("POST", "/api/v1/transits/{mrn}/release"): frozenset({ADMIN, OFFICER}),
    ("POST", "/api/v1/transits/{mrn}/close"): frozenset({ADMIN, OFFICER}),
    ("POST", "/api/v1/transits/{mrn}/cancel"): frozenset({ADMIN, OFFICER}),
    ("POST", "/api/v1/transits/{mrn}/incidents"): frozenset({ADMIN, OFFICER}),
    ("GET", "/api/v1/alerts"): STAFF,
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): frozenset({ADMIN, CONTROL, OFFICER}),
    ("POST", "/api/v1/alerts/{alert_id}/assign"): frozenset({ADMIN, CONTROL}),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): frozenset({ADMIN, CONTROL}),
    ("GET", "/api/v1/partners"): frozenset({ADMIN}),
    ("PUT", "/api/v1/partners/{country}"): frozenset({ADMIN}),
    ("GET", "/api/v1/audit"): frozenset({ADMIN}),
    ("GET", "/api/v1/dead-letters"): frozenset({ADMIN, CONTROL}),
    ("GET", "/api/v1/dead-letters/{letter_id}"): frozenset({ADMIN, CONTROL}),
    ("POST", "/api/v1/dead-letters/{letter_id}/replay"): frozenset({ADMIN, CONTROL}),
    ("GET", "/api/v1/keys"): frozenset({ADMIN}),
    ("POST", "/api/v1/keys"): frozenset({ADMIN}),
    ("POST", "/api/v1/keys/{key_id}/revoke"): frozenset({ADMIN}),
}

PREFIX = "/api/v1"

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key made by `transit keys create`"
)


def principal(
    request: Request, db: Db, key: Annotated[str | None, Depends(api_key_header)]
) -> Principal:
    """The caller, from the ``X-API-Key`` header, allowed on this route by the table.

    The key is looked up on the request's own connection (FastAPI gives the route the
    same one): one connection per request. It is read from the database on every
    request, so a key revoked or expired is refused at once by every API process; the
    check (and the key's last use) is committed before the route's own transaction."""
    if not key:
        raise HTTPException(401, detail="an API key is required (header X-API-Key)")
    try:
        who = authenticate(db, key)
    except KeyRefused as exc:
        db.rollback()
        raise HTTPException(401, detail=str(exc)) from None
    db.commit()
    allowed = PERMISSIONS.get((request.method, route_template(request)), frozenset())
    if who.role not in allowed:
        raise HTTPException(403, detail=f"the role {who.role} may not use this route")
    return who


def route_template(request: Request) -> str:
    """The path template of the route serving this request, as the table has it.

    FastAPI keeps a route's own path (without the router's prefix) in the scope; every
    route that asks for a key is mounted under ``/api/v1``."""
    route: Any = request.scope.get("route")
    path = str(getattr(route, "path", ""))
    return path if path.startswith(PREFIX) else PREFIX + path


Caller = Annotated[Principal, Depends(principal)]
