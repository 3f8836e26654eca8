"""Accepted messages kept as signed (``raw_messages``): show one, and verify it again
with its device's key, as anyone holding that key can (an alert's evidence, say).

``transit messages verify DEVICE SEQ`` exits 0 when the kept bytes verify, 1 when they
do not (or carried no signature), 2 when there is no such message or no key to check
it with (none, or rotated since: ``--key-hex`` checks with the earlier one);
``GET /api/v1/devices/{device_id}/messages/{seq}`` gives the same."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import datetime
from typing import Any

import psycopg

from transit.db import messages as repo
from transit.db.query import Conn
from transit.devices import payload as wire

EXIT = {"verified": 0, "bad_signature": 1, "unsigned": 1, "no_key": 2, "key_rotated": 2}


def check(found: dict[str, Any], key: bytes | None, rotated: datetime | None = None) -> str:
    """Whether a kept message verifies with ``key``: ``verified``, ``bad_signature``,
    ``unsigned`` (it carried no signature), ``no_key`` (none to check it with), or
    ``key_rotated`` (it does not, but ``key`` replaced the one of its time since)."""
    if found["sig"] is None:
        return "unsigned"
    if key is None:
        return "no_key"
    try:
        wire.verify(key, found["topic"], bytes(found["payload"]), found["sig"])
    except wire.PayloadError as exc:
        if rotated is not None and found["received_at"] < rotated:
            return "key_rotated"
        return exc.reason
    return "verified"


def as_json(
    found: dict[str, Any], key: bytes | None, rotated: datetime | None = None
) -> dict[str, Any]:
    """A kept message as the API and the command line show it: the signed bytes in
    base64 and whether they verify with ``key`` (never the key itself)."""
    return {
        "device_id": found["device_id"],
        "seq": found["seq"],
        "time": found["time"].isoformat(),
        "received_at": found["received_at"].isoformat(),
        "topic": found["topic"],
        "payload_base64": base64.b64encode(bytes(found["payload"])).decode(),
        "sig": found["sig"],
        "alg": wire.ENVELOPE_ALG,
        "envelope": found["envelope"],
        "signed_bytes": "the topic, a newline (0x0A), then the payload",
        "verification": check(found, key, rotated),
    }


def lookup(conn: Conn, device_id: str, seq: int) -> dict[str, Any] | None:
    """Message ``seq`` of a device with its verification by the device's current key."""
    found = repo.get_message(conn, device_id, seq)
    if found is None:
        return None
    key = bytes(found["key"]) if found["key"] is not None else None
    return as_json(found, key, found["key_rotated_at"])


def cmd_verify(args: argparse.Namespace) -> int:
    """``transit messages verify DEVICE SEQ [--key-hex HEX]``."""
    from transit.config import get_settings

    with psycopg.connect(get_settings().database_url, connect_timeout=10) as conn:
        found = repo.get_message(conn, args.device, args.seq)
    if found is None:
        sys.stderr.write(f"transit messages: no message {args.seq} of {args.device} kept\n")
        return 2
    if args.key_hex:
        key: bytes | None = bytes.fromhex(args.key_hex)
        rotated = None
    else:
        key = bytes(found["key"]) if found["key"] is not None else None
        rotated = found["key_rotated_at"]
    out = as_json(found, key, rotated)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        sys.stdout.write(
            f"{out['device_id']} seq {out['seq']} on {out['topic']}"
            f" ({'envelope' if out['envelope'] else 'payload'}): {out['verification']}\n"
        )
    return EXIT[out["verification"]]


def add_commands(sub: Any) -> None:
    """Add ``messages verify`` to the ``transit`` parser."""
    ms = sub.add_parser("messages", help="accepted messages as signed: verify one again")
    mss = ms.add_subparsers(dest="messages_cmd", required=True)
    vf = mss.add_parser(
        "verify",
        help="verify a kept message with its device's key",
        description="Exit 0 when the kept bytes verify, 1 when they do not (or carried no"
        " signature), 2 when no such message is kept or there is no key to check with"
        " (none, or rotated since the message: give the earlier one with --key-hex).",
    )
    vf.add_argument("device", help="the device id")
    vf.add_argument("seq", type=int, help="the message's seq")
    vf.add_argument("--key-hex", help="check with this key (default: the device's own)")
    vf.add_argument("--json", action="store_true", help="print the message as JSON")
    vf.set_defaults(func=cmd_verify)
