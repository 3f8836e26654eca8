"""Dead letters: the messages ingest refused, who sent them and why; replay one once
its cause is fixed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from transit.api.deps import Db, Rules
from transit.api.security import Caller
from transit.db import dead_letters as letters
from transit.dead_letters.replay import NotReplayable, replay

router = APIRouter(tags=["dead letters"])
LetterId = Annotated[int, Path(ge=1, le=2**62, description="The dead letter's id")]


@router.get("/dead-letters")
def list_dead_letters(
    db: Db,
    who: Caller,
    device_id: Annotated[
        str | None, Query(min_length=1, max_length=64, description="the sender (from the topic)")
    ] = None,
    reason: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="unknown_device, bad_signature, ..."),
    ] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="received at or after (ISO 8601)")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="received before")] = None,
    replayed: Annotated[bool | None, Query(description="only those replayed, or not")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="page cursor: next_before of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=letters.MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    """Dead letters, newest first, with their raw bytes in base64; filtered by sender,
    reason and time received. A full page has ``next_before``: pass it as ``before``
    for the next one."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(
                422,
                detail=[
                    {
                        "loc": ["query", name],
                        "msg": "needs a time zone (Z or +hh:mm)",
                        "type": "value_error",
                    }
                ],
            )
    if start and end and start >= end:
        raise HTTPException(
            422,
            detail=[
                {"loc": ["query", "to"], "msg": "must be later than from", "type": "value_error"}
            ],
        )
    q = letters.Query(device_id, reason, start, end, replayed, before, limit)
    return letters.search(db, q)


@router.get("/dead-letters/{letter_id}")
def get_dead_letter(db: Db, who: Caller, letter_id: LetterId) -> dict[str, Any]:
    """One dead letter, with its raw bytes in base64 and its replays."""
    letter = letters.get(db, letter_id)
    if letter is None:
        raise HTTPException(404, detail=f"no dead letter {letter_id}")
    return letter


@router.post("/dead-letters/{letter_id}/replay")
def replay_dead_letter(db: Db, who: Caller, letter_id: LetterId, pipeline: Rules) -> dict[str, Any]:
    """Run the kept message through ingest again (once its cause is fixed). ``accepted``
    with the telemetry rows written (0 when stored already: a replay never stores
    twice), or ``refused`` with the reason; the letter records it and the audit log
    has it."""
    try:
        outcome = replay(db, letter_id, who.actor, datetime.now(UTC), pipeline)
    except LookupError:
        db.rollback()
        raise HTTPException(404, detail=f"no dead letter {letter_id}") from None
    except NotReplayable as exc:
        db.rollback()
        raise HTTPException(409, detail={"refused": [str(exc)]}) from None
    db.commit()
    return {**outcome.as_json(), "dead_letter": letters.get(db, letter_id)}
