"""Ordered SQL migrations, recorded in ``schema_migrations``; a second run changes nothing.

After the SQL, the TimescaleDB features the server offers are detected and used:
under the community licence (the official Docker image) compression runs as a policy.
Retention is the application's under either build (``transit.retention``): a
TimescaleDB retention policy would drop the chunks of transits still open or under
enquiry, so none is added, and one left by an earlier version is removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One SQL file of ``transit/db/migrations``."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("transit.db.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def current_level(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The highest applied migration, 0 when none."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def timescale_license(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    """``apache`` or ``timescale`` (community), or None without TimescaleDB."""
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if not row:
        return None
    lic = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return str(lic[0]) if lic and lic[0] else "apache"


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[Migration]:
    """Apply the pending migrations, each in its own transaction. Returns those applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    conn.commit()
    applied = []
    for mig in available():
        with conn.transaction():
            # Serialise concurrent migrators (two services starting at once).
            conn.execute("SELECT pg_advisory_xact_lock(7421)")
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (mig.version,)
            ).fetchone()
            if done:
                continue
            conn.execute(mig.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
            applied.append(mig)
    if timescale_license(conn) == "timescale":
        _community_policies(conn)
    return applied


def _community_policies(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Compression policies, which only the community licence offers (no retention
    policy: it cannot see open transits; ``transit.retention`` does that job)."""
    with conn.transaction():
        for table, segment in (
            ("fixes", "device_id"),
            ("seal_events", "seal_id"),
            ("raw_messages", "device_id"),
        ):
            conn.execute(
                f"ALTER TABLE {table} SET (timescaledb.compress,"
                f" timescaledb.compress_segmentby = '{segment}')"
            )
            conn.execute(
                "SELECT add_compression_policy(%s, interval '7 days', if_not_exists => true)",
                (table,),
            )
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
