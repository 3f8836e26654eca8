"""``transit dead-letters list|show|replay``: the messages ingest refused, from a shell."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from typing import Any

from transit.cli.common import actor, connect
from transit.config import get_settings


def _time(text: str) -> datetime:
    """An ISO 8601 time with its zone (``2026-11-23T06:00:00Z``)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone (Z or +hh:mm)")
    return t


def cmd_list(args: argparse.Namespace) -> int:
    from transit.db.dead_letters import Query, search

    q = Query(args.device, args.reason, args.since, args.until, None, args.before, args.limit)
    with connect() as conn:
        page = search(conn, q)
    if args.json:
        sys.stdout.write(json.dumps(page, indent=2) + "\n")
        return 0
    for d in page["items"]:
        replayed = f"  replayed {d['replay_outcome']}" if d["replayed_at"] else ""
        sys.stdout.write(
            f"{d['id']:>8}  {d['received_at'][:19]}  {d['device_id'] or '-':<20}"
            f"  {d['reason']:<16} {d['size']:>6} B{replayed}\n"
        )
    if page["next_before"]:
        sys.stdout.write(f"more: --before {page['next_before']}\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from transit.db.dead_letters import get

    with connect() as conn:
        d = get(conn, args.id)
    if d is None:
        sys.stderr.write(f"transit dead-letters show: no dead letter {args.id}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
        return 0
    for k, v in d.items():
        if k != "raw_base64":
            sys.stdout.write(f"{k + ':':<16}{v}\n")
    raw = base64.b64decode(d["raw_base64"])
    try:
        sys.stdout.write(f"{'payload:':<16}{raw.decode('utf-8')}\n")
    except UnicodeDecodeError:
        sys.stdout.write(f"{'payload (hex):':<16}{raw.hex()}\n")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from transit import bootstrap
    from transit.dead_letters.replay import NotReplayable, replay

    with connect() as conn:
        try:
            outcome = replay(
                conn, args.id, actor(), datetime.now(UTC), bootstrap.pipeline(get_settings())
            )
        except (LookupError, NotReplayable) as exc:
            sys.stderr.write(f"transit dead-letters replay: {exc}\n")
            return 1
        conn.commit()
    if args.json:
        sys.stdout.write(json.dumps(outcome.as_json(), indent=2) + "\n")
    elif outcome.outcome == "accepted":
        sys.stdout.write(
            f"dead letter {args.id}: accepted, {outcome.rows_written} telemetry rows written\n"
        )
    else:
        sys.stdout.write(
            f"dead letter {args.id}: refused again: {outcome.reason}: {outcome.detail}\n"
        )
    return 0 if outcome.outcome == "accepted" else 3


def add_commands(sub: Any) -> None:
    """Add ``dead-letters`` and its subcommands to the ``transit`` parser."""
    dl = sub.add_parser("dead-letters", help="messages ingest refused: list, show, replay")
    dls = dl.add_subparsers(dest="dead_letters_cmd", required=True)
    ls = dls.add_parser("list", help="newest first, with filters")
    ls.add_argument("--device", help="the sender's device id")
    ls.add_argument("--reason", help="unknown_device, bad_signature, schema, ...")
    ls.add_argument("--from", dest="since", type=_time, help="received at or after (ISO 8601)")
    ls.add_argument("--to", dest="until", type=_time, help="received before (ISO 8601)")
    ls.add_argument("--limit", type=int, default=50, help="1 to 1000")
    ls.add_argument("--before", type=int, metavar="ID", help="the next page, from this id down")
    ls.add_argument("--json", action="store_true", help="print the page as JSON")
    ls.set_defaults(func=cmd_list)
    sh = dls.add_parser("show", help="one dead letter with its payload")
    sh.add_argument("id", type=int)
    sh.add_argument("--json", action="store_true", help="print it as JSON (raw in base64)")
    sh.set_defaults(func=cmd_show)
    rp = dls.add_parser(
        "replay",
        help="run it through ingest again, once its cause is fixed",
        description="Exit 0 when accepted (a second replay writes nothing more),"
        " 3 when refused again (the letter keeps the new reason).",
    )
    rp.add_argument("id", type=int)
    rp.add_argument("--json", action="store_true", help="print the outcome as JSON")
    rp.set_defaults(func=cmd_replay)
