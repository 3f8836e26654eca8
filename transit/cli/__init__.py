"""The ``transit`` command: every entry point of the system, one module per room.

Each module adds its subcommands (``add_commands``); the commands build what they run
through :mod:`transit.bootstrap`, the composition root.
"""

from __future__ import annotations

import argparse
import logging
import sys

import psycopg

from transit import messages, retention
from transit.cli import bench, fleet, keys, risk, system
from transit.dead_letters import cli as dead_letters_cli


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per entry point."""
    p = argparse.ArgumentParser(prog="transit", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (system, fleet, bench, keys, risk, dead_letters_cli, retention, messages):
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``transit`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rc: int = args.func(args)
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except ValueError as exc:  # bad input named by the layer that refused it
        print(f"transit: error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:  # not this command's fault: say so, no traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"transit: error: the database is unreachable ({first})", file=sys.stderr)
        return 1
    return rc
