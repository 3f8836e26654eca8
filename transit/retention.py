"""Telemetry retention with ``drop_chunks``, which every TimescaleDB build has (the
Apache-2 one too); never the evidence of a transit still open or under enquiry.

``TRANSIT_RETENTION_DAYS`` (unset: everything is kept) says how old telemetry may
get. ``drop_chunks`` removes whole chunks (a day of ``fixes``, ``seal_events``,
``filtered_fixes`` or ``raw_messages``, every device's), so a chunk goes only when
its whole time range lies outside every *protected window*: the time, from its
declaration on, of a transit that is not finished (neither closed nor cancelled),
and, from its declaration to its closing, of a finished transit whose timeline
records an enquiry (it went overdue); each widened by :data:`MARGIN`. What may go is
then one or more ranges older than the cut-off (now less the retention) with the
protected windows cut out, each dropped with ``drop_chunks(older_than => end,
newer_than => start)``. A transit declared long ago and never closed holds every
chunk from its declaration on: the report names the transits that hold chunks back
(``held_by``).

The ingest process holding the watchdog lease runs this when it takes the lease and
then once an hour: ingest runs wherever telemetry arrives, and one process across
all workers holds the lease (docs/ingest-membership.md). ``transit retention run``
runs it by hand (``--dry-run`` to see first).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg

from transit import audit
from transit.db import retention as repo
from transit.db import server
from transit.lifecycle import FINISHED

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

# Telemetry hypertables (those present: filtered fixes and the messages as signed
# came with later migrations).
HYPERTABLES = ("fixes", "seal_events", "filtered_fixes", "raw_messages")
# Fixes from shortly before a declaration are read with it (the live map looks an
# hour back for a truck's position), and a fix stamped at the closing is in the
# track: a window is widened by this much on both sides.
MARGIN = timedelta(hours=1)
EVERY_S = 3600.0  # how often the long-running process runs it


@dataclass(frozen=True)
class Window:
    """A protected transit's telemetry: from ``start``, to ``end`` (None: still open)."""

    mrn: str
    status: str
    start: datetime
    end: datetime | None
    enquiry: bool = False


@dataclass(frozen=True)
class Range:
    """Chunks that may be dropped: those lying wholly after ``start`` (None: from the
    beginning) and before ``end``."""

    start: datetime | None
    end: datetime


def droppable(older_than: datetime, windows: list[Window]) -> list[Range]:
    """The ranges before ``older_than`` that no protected window touches, in time order."""
    out: list[Range] = []
    cursor: datetime | None = None  # the end of the protected time so far
    for w in sorted(windows, key=lambda w: w.start):
        if w.start >= older_than:
            break
        if cursor is None or w.start > cursor:
            out.append(Range(cursor, w.start))
        if w.end is None:
            return out
        cursor = w.end if cursor is None else max(cursor, w.end)
    if cursor is None or cursor < older_than:
        out.append(Range(cursor, older_than))
    return out


@dataclass
class Report:
    """What a retention run found and did."""

    days: int
    cutoff: datetime
    ranges: list[Range]
    held_by: list[Window]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        """The report as ``transit retention run --json`` and doctor print it."""
        return {
            "days": self.days,
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "ranges": [
                {"from": r.start.isoformat() if r.start else None, "to": r.end.isoformat()}
                for r in self.ranges
            ],
            "held_by": [
                {
                    "mrn": w.mrn,
                    "status": w.status,
                    "from": w.start.isoformat(),
                    "to": w.end.isoformat() if w.end else None,
                    "enquiry": w.enquiry,
                }
                for w in self.held_by
            ],
            "dropped": self.dropped,
            "chunks_dropped": sum(len(v) for v in self.dropped.values()),
        }


def protected_windows(conn: Conn, older_than: datetime) -> list[Window]:
    """The protected transits whose telemetry starts before ``older_than``."""
    rows = repo.protected(conn, older_than, sorted(FINISHED), MARGIN)
    return [Window(r[0].strip(), r[1], r[2], r[3], bool(r[4])) for r in rows]


def run(
    conn: Conn, days: int, now: datetime, actor: str = "retention", dry_run: bool = False
) -> Report:
    """Drop the telemetry chunks older than ``days`` before ``now`` that hold nothing of
    a protected transit, in the caller's transaction (audited when anything goes).

    With ``dry_run``, the chunks that would go are listed and nothing is dropped."""
    if days < 1:
        raise ValueError(f"retention days must be at least 1, not {days}")
    cutoff = now - timedelta(days=days)
    # Old chunks are not written to; a lock still held elsewhere is waited for only
    # so long (the next run will find them).
    repo.lock(conn, timeout="10s")
    windows = protected_windows(conn, cutoff)
    report = Report(days, cutoff, droppable(cutoff, windows), windows, dry_run=dry_run)
    fn: Literal["show_chunks", "drop_chunks"] = "show_chunks" if dry_run else "drop_chunks"
    for table in repo.hypertables(conn, HYPERTABLES):
        report.dropped[table] = [
            name for r in report.ranges for name in repo.chunks(conn, table, r.end, r.start, fn)
        ]
    if not dry_run and any(report.dropped.values()):
        details = report.as_json()
        details.pop("held_by")
        audit.append(conn, actor, "telemetry.retention", ",".join(report.dropped), details)
        log.info("retention: dropped %s", report.dropped)
    return report


def cmd_run(args: argparse.Namespace) -> int:
    """``transit retention run``: one run now, with the setting or ``--days``."""
    from transit.cli.common import actor
    from transit.config import get_settings

    settings = get_settings()
    days = args.days if args.days is not None else settings.retention_days
    if days is None:
        sys.stderr.write(
            "transit retention run: no retention set (TRANSIT_RETENTION_DAYS or --days)\n"
        )
        return 2
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        now = server.now(conn)
        report = run(conn, days, now, actor=actor(), dry_run=args.dry_run)
        conn.commit()
    out = report.as_json()
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    verb = "would drop" if args.dry_run else "dropped"
    sys.stdout.write(f"retention {days} days: cut-off {out['cutoff']}\n")
    for table, names in report.dropped.items():
        sys.stdout.write(f"{table}: {verb} {len(names)} chunks\n")
    for w in out["held_by"]:
        why = "under enquiry" if w["enquiry"] else w["status"]
        sys.stdout.write(f"kept from {w['from']}: transit {w['mrn']} ({why})\n")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``retention run`` to the ``transit`` parser."""
    rt = sub.add_parser("retention", help="drop old telemetry (never an open transit's)")
    rts = rt.add_subparsers(dest="retention_cmd", required=True)
    rr = rts.add_parser(
        "run",
        help="run the retention now (the ingest watchdog runs it hourly)",
        description="Drop the days of fixes and seal events older than the retention"
        " that hold nothing of a transit not closed or under enquiry.",
    )
    rr.add_argument("--days", type=int, help="instead of TRANSIT_RETENTION_DAYS")
    rr.add_argument("--dry-run", action="store_true", help="list what would go; drop nothing")
    rr.add_argument("--json", action="store_true", help="print the report as JSON")
    rr.set_defaults(func=cmd_run)
