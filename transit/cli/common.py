"""What every command module shares: a database connection and the terminal's name."""

from __future__ import annotations

from typing import Any

import psycopg

from transit.config import get_settings


def connect() -> psycopg.Connection[Any]:
    """A connection to the settings' database (10 s to connect, or an error)."""
    return psycopg.connect(get_settings().database_url, connect_timeout=10)


def actor() -> str:
    """How the audit trail names the person at this terminal."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


def positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n
