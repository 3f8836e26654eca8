"""API keys: made once, shown once, stored as a SHA-256 hash with a role.

A key reads ``tk_<prefix>_<secret>``; the prefix finds the row, the hash of the whole
key is compared in constant time. Roles: ``admin``; ``officer`` bound to one office;
``control_room``; ``partner`` bound to one country.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from transit import audit

ROLES = ("admin", "officer", "control_room", "partner")


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


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create(
    conn: psycopg.Connection[Any],
    role: str,
    office: str | None = None,
    country: str | None = None,
    label: str = "",
    actor: str = "cli",
) -> str:
    """Make a key (in the caller's transaction) and return it: it is never shown again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if (role == "officer") != (office is not None):
        raise ValueError("an officer's key is bound to one office (--office), and only theirs")
    if (role == "partner") != (country is not None):
        raise ValueError("a partner's key is bound to one country (--country), and only theirs")
    if office is not None:
        found = conn.execute("SELECT 1 FROM offices WHERE ref = %s", (office,)).fetchone()
        if not found:
            raise ValueError(f"no office {office!r}")
    if country is not None and (
        len(country) != 2 or not country.isalpha() or not country.isupper()
    ):
        raise ValueError(f"country must be an ISO 3166 alpha-2 code, not {country!r}")
    prefix = secrets.token_hex(4)
    key = f"tk_{prefix}_{secrets.token_urlsafe(24)}"
    conn.execute(
        "INSERT INTO api_keys (prefix, key_hash, role, office, country, label)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (prefix, _hash(key), role, office, country, label),
    )
    audit.append(
        conn,
        actor,
        "key.create",
        f"key:{prefix}",
        {"role": role, "office": office, "country": country, "label": label},
    )
    return key


def lookup(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """The principal a key stands for, or None (unknown, malformed or revoked)."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "tk":
        return None
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        row = cur.execute(
            "SELECT id, prefix, key_hash, role, office, country, label FROM api_keys"
            " WHERE prefix = %s AND revoked_at IS NULL",
            (parts[1],),
        ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[2]), _hash(key)):
        return None
    return Principal(row[0], row[1], row[3], row[4], row[5].strip() if row[5] else None, row[6])
