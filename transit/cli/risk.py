"""``transit risk``: the risk model (docs/risk.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from transit.cli.common import connect, positive_int


def cmd_risk_train(args: argparse.Namespace) -> int:
    from transit.services.risk import train

    with connect() as conn:
        result = train(conn, min_each=args.min_each)  # ValueError: too few, said by main
        conn.commit()
    print(json.dumps(result))
    return 0


def add_commands(sub: Any) -> None:
    """Add this module's commands to the ``transit`` parser."""
    risk = sub.add_parser("risk", help="the risk model").add_subparsers(
        dest="risk_cmd", required=True
    )
    tr = risk.add_parser(
        "train",
        help="fit a model on the finished transits and what their inspections found;"
        " it scores from the next batch on",
    )
    tr.add_argument(
        "--min-each",
        type=positive_int,
        default=10,
        help="transits needed of each label (default 10)",
    )
    tr.set_defaults(func=cmd_risk_train)
