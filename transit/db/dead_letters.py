"""Dead letters (table ``dead_letters``): the messages ingest refused, with their raw
bytes. A filtered, paged list and one letter as JSON shows them, and a letter taken
for a replay and the replay recorded (:mod:`transit.dead_letters.replay`). Ingest
writes them with its batches (:mod:`transit.db.store`)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from transit.db.query import Conn, row, rows, run

if TYPE_CHECKING:
    from transit.ingest.types import DeadLetter

MAX_LIMIT = 1000  # dead letters in one page
COLUMNS = (
    "id, received_at, source, topic, device_id, reason, detail, first_reason, sig,"
    " octet_length(raw) AS size, raw, replays, replayed_at, replay_outcome"
)


@dataclass(frozen=True)
class Query:
    """Which dead letters to list: newest first, ``limit`` at a time.

    ``since`` and ``until`` bound the time the broker's message was received
    (``since`` included, ``until`` not); ``before`` is the page cursor (the
    ``next_before`` of the previous page)."""

    device_id: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    replayed: bool | None = None
    before: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {self.limit}")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("from must be earlier than to")


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as the API and the CLI show it: the raw bytes in base64."""
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    raw: bytes = bytes(row["raw"])
    del out["raw"]
    out["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return out


def search(conn: Conn, q: Query) -> dict[str, Any]:
    """One page of dead letters matching ``q``: ``items``, ``count`` and ``next_before``
    (the cursor of the next page, None on the last one)."""
    found = rows(
        conn,
        f"SELECT {COLUMNS} FROM dead_letters"
        " WHERE (%(device)s::text IS NULL OR device_id = %(device)s)"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR received_at < %(until)s)"
        " AND (%(replayed)s::bool IS NULL OR (replayed_at IS NOT NULL) = %(replayed)s)"
        " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {
            "device": q.device_id,
            "reason": q.reason,
            "since": q.since,
            "until": q.until,
            "replayed": q.replayed,
            "before": q.before,
            "limit": q.limit,
        },
    )
    items = [as_json(r) for r in found]
    more = len(items) == q.limit
    return {
        "count": len(items),
        "items": items,
        "next_before": items[-1]["id"] if more and items else None,
    }


def insert(conn: Conn, letters: list[DeadLetter]) -> None:
    """Keep messages ingest refused."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (source, topic, raw, reason, detail, sig)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(d.source, d.topic, d.raw, d.reason, d.detail, d.sig) for d in letters],
        )


def get(conn: Conn, letter_id: int) -> dict[str, Any] | None:
    """One dead letter, or None."""
    found = row(conn, f"SELECT {COLUMNS} FROM dead_letters WHERE id = %s", (letter_id,))
    return as_json(found) if found else None


def take(conn: Conn, letter_id: int) -> dict[str, Any] | None:
    """A letter's ``topic``, ``raw``, ``sig`` and ``reason``, its row locked for a
    replay (concurrent replays of one letter wait for each other); None: no such letter."""
    return row(
        conn,
        "SELECT topic, raw, sig, reason FROM dead_letters WHERE id = %s FOR UPDATE",
        (letter_id,),
    )


def record_replay(
    conn: Conn,
    letter_id: int,
    at: datetime,
    outcome: str,
    reason: str | None,
    detail: str | None,
) -> None:
    """Record a replay on its letter; refused again, the letter takes the new reason
    and detail (the first reason is kept)."""
    run(
        conn,
        "UPDATE dead_letters SET replays = replays + 1, replayed_at = %s,"
        " replay_outcome = %s, first_reason = coalesce(first_reason, reason),"
        " reason = coalesce(%s, reason), detail = coalesce(%s, detail) WHERE id = %s",
        (at, outcome, reason, detail, letter_id),
    )
