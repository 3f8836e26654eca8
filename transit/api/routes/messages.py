"""Accepted messages as their devices signed them: the exact bytes and signature of
one, and whether they verify with the device's key (an alert's evidence, checked)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from transit import messages
from transit.api.deps import Db
from transit.api.security import Caller

router = APIRouter(tags=["devices"])


@router.get("/devices/{device_id}/messages/{seq}")
def get_message(
    db: Db,
    who: Caller,
    device_id: Annotated[str, Path(min_length=1, max_length=64, description="The device id")],
    seq: Annotated[int, Path(ge=0, lt=2**63, description="The message's seq")],
) -> dict[str, Any]:
    """Message ``seq`` of a device as kept: the topic, the signed payload in base64 (for
    an envelope, its body), the signature and ``verification`` by the device's current
    key (``verified``, ``bad_signature``, ``unsigned``, ``no_key``, or ``key_rotated``
    when the key was replaced since). Anyone holding the key checks it: HMAC-SHA256
    over the topic, a newline and the payload (docs/protocol.md)."""
    found = messages.lookup(db, device_id, seq)
    if found is None:
        raise HTTPException(404, detail=f"no message {seq} of device {device_id} is kept")
    return found
