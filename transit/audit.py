"""The audit trail: an append-only, hash-chained log of who did what, and when.

Each row's hash is SHA-256 over the previous row's hash and the row's own content
(time, actor, action, subject and details, as canonical JSON). Editing a row breaks
its hash; deleting one breaks the link of the row after it; ``transit audit verify``
finds both. Rows are appended under a transaction-scoped advisory lock, so concurrent
writers cannot fork the chain. Deleting the newest rows leaves a shorter chain that is
still whole: ``verify`` prints the head (its id and hash) to be kept outside the
database and checked later with ``--head``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from transit.db import audit as repo

Conn = psycopg.Connection[Any]


def _digest(
    prev: bytes | None, at: datetime, actor: str, action: str, subject: str, details: Any
) -> bytes:
    body = json.dumps(
        {
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((prev or b"") + body.encode()).digest()


def append(
    conn: Conn, actor: str, action: str, subject: str, details: dict[str, Any] | None = None
) -> int:
    """Append one entry in the caller's transaction; returns its id."""
    details = json.loads(json.dumps(details or {}, default=str))  # as jsonb will give it back
    prev = repo.lock_head(conn)
    at = datetime.now(UTC)
    digest = _digest(prev, at, actor, action, subject, details)
    return repo.insert(conn, at, actor, action, subject, json.dumps(details), prev, digest)


@dataclass
class Verdict:
    """What ``verify`` found."""

    rows: int
    problems: list[str]
    head_id: int | None
    head_hash: str | None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(conn: Conn, head: str | None = None) -> Verdict:
    """Walk the chain from the first row; every broken hash or link is a problem.

    ``head`` (``ID:HEX`` as printed by an earlier verify) must still be in the chain,
    which finds the newest rows deleted."""
    problems: list[str] = []
    prev: bytes | None = None
    prev_id: int | None = None
    count = 0
    seen: dict[int, str] = {}
    for rid, at, actor, action, subject, details, prev_hash, digest in repo.chain(conn):
        count += 1
        stored_prev = bytes(prev_hash) if prev_hash is not None else None
        if stored_prev != prev:
            problems.append(
                f"row {rid}: does not follow row {prev_id} (a row was deleted or altered)"
            )
        want = _digest(stored_prev, at, actor, action, subject, details)
        if digest is None or bytes(digest) != want:
            problems.append(f"row {rid}: its content does not match its hash (edited)")
        prev = bytes(digest) if digest is not None else None
        prev_id = rid
        seen[rid] = prev.hex() if prev else ""
    if head is not None:
        hid, _, hhash = head.partition(":")
        if not hid.isdigit() or seen.get(int(hid)) != hhash:
            problems.append(f"the head {head} recorded earlier is no longer in the chain")
    return Verdict(count, problems, prev_id, prev.hex() if prev else None)
