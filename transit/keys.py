"""API keys: made once, shown once, stored as a SHA-256 hash with a role; listed,
revoked and expired.

A key reads ``tk_<id>_<secret>``. The id (8 hex digits) is public: it finds the row,
and an admin names a key by it (``transit keys revoke 3f2a9c1b``) without ever holding
its secret; the hash of the whole key is compared in constant time. Roles: ``admin``;
``officer`` bound to one office; ``control_room``; ``partner`` bound to one country.

A key works until it is revoked or its ``expires_at`` has passed. Both are read from the
database on every use (every HTTP request; the live feed re-reads its clients' keys
every second), so a key revoked by one API process, or by the CLI, is refused by every
process at once. Nothing lists or returns a key's hash or secret after it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from transit import audit
from transit.db import keys as repo
from transit.db import offices

ROLES = ("admin", "officer", "control_room", "partner")
KEY_ID = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    key_id: int
    prefix: str
    role: str
    office: str | None = None
    country: str | None = None
    label: str = ""

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        where = self.office or self.country or ""
        return f"{self.role}:{self.prefix}" + (f"@{where}" if where else "")


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key: never its hash or its secret.

    ``status`` is ``active``, ``revoked`` or ``expired``."""

    id: str
    role: str
    office: str | None
    country: str | None
    label: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None
    status: str

    def as_dict(self) -> dict[str, Any]:
        """The fields, datetimes as ISO 8601."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


class KeyRefused(Exception):
    """A key that does not open the API: malformed, unknown, revoked or expired.

    The message says which, for the 401 body and the WebSocket close reason."""


class KeyRequestError(ValueError):
    """A key cannot be made as asked; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def key_id(text: str) -> str:
    """The public id of a key, from the id itself or a whole ``tk_<id>_...`` key.

    Raises:
        ValueError: the text is neither."""
    text = text.strip()
    candidate = text.split("_")[1] if text.startswith("tk_") else text
    if not KEY_ID.match(candidate):  # named without the rest: it may be a secret
        raise ValueError(
            f"a key id is the 8 hex digits after tk_ (as `keys list` shows), not {candidate!r}"
        )
    return candidate


def create(
    conn: psycopg.Connection[Any],
    role: str,
    office: str | None = None,
    country: str | None = None,
    label: str = "",
    actor: str = "cli",
    expires_at: datetime | None = None,
) -> str:
    """Make a key (in the caller's transaction) and return it: it is never shown again.

    Args:
        expires_at: when the key stops working (with its time zone); None: never.

    Raises:
        KeyRequestError: a bad role, scope or expiry, naming the field."""
    if role not in ROLES:
        raise KeyRequestError("role", f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if (role == "officer") != (office is not None):
        raise KeyRequestError(
            "office", "an officer's key is bound to one office (--office), and only theirs"
        )
    if (role == "partner") != (country is not None):
        raise KeyRequestError(
            "country", "a partner's key is bound to one country (--country), and only theirs"
        )
    if office is not None and not offices.exists(conn, office):
        raise KeyRequestError("office", f"no office {office!r}")
    if country is not None and (
        len(country) != 2 or not country.isalpha() or not country.isupper()
    ):
        raise KeyRequestError(
            "country", f"country must be an ISO 3166 alpha-2 code, not {country!r}"
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise KeyRequestError("expires_at", "the expiry must name its time zone")
        if not repo.in_future(conn, expires_at):
            raise KeyRequestError(
                "expires_at", f"the expiry {_iso(expires_at)} is not in the future"
            )
    prefix = secrets.token_hex(4)
    key = f"tk_{prefix}_{secrets.token_urlsafe(24)}"
    repo.insert(conn, prefix, _hash(key), role, office, country, label, actor, expires_at)
    audit.append(
        conn,
        actor,
        "key.create",
        f"key:{prefix}",
        {
            "role": role,
            "office": office,
            "country": country,
            "label": label,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return key


def list_keys(conn: psycopg.Connection[Any], include_inactive: bool = False) -> list[KeyInfo]:
    """The keys, oldest first: the active ones, or with ``include_inactive`` every key
    ever made (revoked and expired too)."""
    return [KeyInfo(**r) for r in repo.infos(conn, include_inactive)]


def get(conn: psycopg.Connection[Any], kid: str) -> KeyInfo | None:
    """One key by its public id, or None."""
    row = repo.info(conn, kid)
    return KeyInfo(**row) if row else None


def revoke(conn: psycopg.Connection[Any], kid: str, actor: str, reason: str = "") -> KeyInfo:
    """Revoke a key (in the caller's transaction), audited; it stops working on its
    holder's next request once committed.

    Raises:
        LookupError: no key has this id.
        ValueError: the key was already revoked."""
    if not repo.revoke(conn, kid, actor):
        known = get(conn, kid)
        if known is None:
            raise LookupError(f"no key {kid!r}")
        assert known.revoked_at is not None
        raise ValueError(f"the key {kid} was already revoked at {_iso(known.revoked_at)}")
    audit.append(conn, actor, "key.revoke", f"key:{kid}", {"reason": reason})
    info = get(conn, kid)
    assert info is not None
    return info


def _refusal(prefix: str, revoked_at: datetime | None, expires_at: datetime | None) -> str:
    if revoked_at is not None:
        return f"the API key {prefix} was revoked at {_iso(revoked_at)}"
    assert expires_at is not None
    return f"the API key {prefix} expired at {_iso(expires_at)}"


def authenticate(conn: psycopg.Connection[Any], key: str) -> Principal:
    """The principal a key stands for, read from the database now.

    Its last use is recorded (at most once a minute) in the caller's transaction, which
    the caller commits.

    Raises:
        KeyRefused: the key is malformed, unknown, revoked or expired (the message says
            which; revoked and expired are said only to the holder of the right secret)."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "tk":
        raise KeyRefused("the API key is malformed (a key reads tk_<id>_<secret>)")
    row = repo.for_authentication(conn, parts[1])
    if row is None or not hmac.compare_digest(bytes(row[2]), _hash(key)):
        raise KeyRefused("the API key is unknown")
    rid, prefix, _, role, office, country, label, revoked_at, expires_at, expired, stale = row
    if revoked_at is not None or expired:
        raise KeyRefused(_refusal(prefix, revoked_at, expires_at))
    if stale:
        repo.touch(conn, rid)
    return Principal(rid, prefix, role, office, country.strip() if country else None, label)


def lookup(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """The principal a key stands for, or None (malformed, unknown, revoked, expired)."""
    try:
        return authenticate(conn, key)
    except KeyRefused:
        return None


def refused(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, str]:
    """Of these keys (by row id), those that no longer work, with the reason: revoked,
    expired, or deleted. One query, for a process re-checking the keys it serves."""
    rows = repo.states(conn, ids)
    out = dict.fromkeys(set(ids) - {r[0] for r in rows}, "the API key was deleted")
    for rid, prefix, revoked_at, expires_at, dead in rows:
        if dead:
            out[rid] = _refusal(prefix, revoked_at, expires_at)
    return out


def expiry(now: datetime, in_days: float | None = None, at: str | None = None) -> datetime | None:
    """When a key made ``now`` expires: ``in_days`` from now, or ``at`` (ISO 8601; UTC
    when it names no zone), or never.

    Raises:
        KeyRequestError: both given, a non-positive count of days, an unreadable time."""
    if in_days is not None and at is not None:
        raise KeyRequestError("expires_at", "give --expires-in or --expires, not both")
    if in_days is not None:
        if not 0 < in_days <= 36_500:
            raise KeyRequestError(
                "expires_in_days", f"--expires-in is days in (0, 36500], not {in_days}"
            )
        return now + timedelta(days=in_days)
    if at is None:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise KeyRequestError(
            "expires_at", f"--expires takes an ISO 8601 time (2026-01-31T18:00Z), not {at!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def render(infos: list[KeyInfo]) -> str:
    """Keys as a table for a terminal, one line each (no hash, no secret)."""

    def when(at: datetime | None) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at else "-"

    head = ("ID", "ROLE", "SCOPE", "LABEL", "CREATED (UTC)", "BY", "EXPIRES", "LAST USED", "STATUS")
    rows = [head] + [
        (
            k.id,
            k.role,
            k.office or k.country or "-",
            k.label or "-",
            when(k.created_at),
            k.created_by or "-",
            when(k.expires_at),
            when(k.last_used_at),
            k.status + (f" by {k.revoked_by} {when(k.revoked_at)}" if k.revoked_at else ""),
        )
        for k in infos
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] + "\n"
        for r in rows
    )
