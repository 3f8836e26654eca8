"""API keys and the audit trail."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from transit.cli.common import actor, connect


def cmd_keys_create(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from transit import keys

    with connect() as conn:
        try:
            expires = keys.expiry(datetime.now(UTC), args.expires_in, args.expires)
            key = keys.create(
                conn, args.role, args.office, args.country, args.label, actor(), expires
            )
        except ValueError as exc:
            sys.stderr.write(f"transit keys create: {exc}\n")
            return 2
        conn.commit()
    sys.stdout.write(key + "\n")
    sys.stderr.write("keep this key: it is stored hashed and will not be shown again\n")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from transit import keys

    with connect() as conn:
        found = keys.list_keys(conn, include_inactive=args.all)
    if args.json:
        sys.stdout.write(json.dumps([k.as_dict() for k in found], indent=2) + "\n")
    else:
        sys.stdout.write(keys.render(found))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from transit import keys

    with connect() as conn:
        try:
            info = keys.revoke(conn, keys.key_id(args.id), actor(), args.reason)
        except (LookupError, ValueError) as exc:
            sys.stderr.write(f"transit keys revoke: {exc}\n")
            return 2
        conn.commit()
    sys.stdout.write(f"revoked {info.id} ({info.role}, {info.label or 'no label'})\n")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from transit import audit

    with connect() as conn:
        verdict = audit.verify(conn, args.head)
    for p in verdict.problems:
        sys.stdout.write(f"TAMPERED {p}\n")
    head = f"{verdict.head_id}:{verdict.head_hash}" if verdict.head_id else "none"
    state = "intact" if verdict.ok else "BROKEN"
    sys.stdout.write(f"audit log: {verdict.rows} rows, chain {state}, head {head}\n")
    return 0 if verdict.ok else 1


def add_commands(sub: Any) -> None:
    """Add this module's commands to the ``transit`` parser."""
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    kc = keys.add_parser("create", help="make an API key and print it once")
    kc.add_argument(
        "--role", required=True, choices=["admin", "officer", "control_room", "partner"]
    )
    kc.add_argument("--office", help="the officer's office (8 characters)")
    kc.add_argument("--country", help="the partner's country (ISO alpha-2)")
    kc.add_argument("--label", default="", help="who holds it")
    kc.add_argument("--expires-in", type=float, metavar="DAYS", help="stop working DAYS from now")
    kc.add_argument("--expires", metavar="AT", help="stop working at AT (ISO 8601; UTC if no zone)")
    kc.set_defaults(func=cmd_keys_create)
    kl = keys.add_parser("list", help="the active keys (no secrets): id, role, scope, expiry")
    kl.add_argument("--all", action="store_true", help="revoked and expired keys too")
    kl.add_argument("--json", action="store_true", help="print a JSON list")
    kl.set_defaults(func=cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key: refused at once, everywhere")
    kr.add_argument("id", help="the key's id (the 8 hex digits after tk_, as `keys list` shows)")
    kr.add_argument("--reason", default="", help="kept in the audit log")
    kr.set_defaults(func=cmd_keys_revoke)

    au = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_cmd", required=True
    )
    av = au.add_parser("verify", help="check the hash chain; exit 1 if a row was altered")
    av.add_argument("--head", help="ID:HASH printed by an earlier verify, still expected")
    av.set_defaults(func=cmd_audit_verify)
