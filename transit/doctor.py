"""``transit doctor``: is the database up, with TimescaleDB, the schema, and the broker?"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg

from transit import retention
from transit.config import Settings
from transit.db import server
from transit.db.migrate import available, current_level, timescale_license
from transit.mqtt import make_client

EXPECTED_HYPERTABLES = ("fixes", "seal_events")
# Tables whose growth is counted by an indexed time column (a hypertable's is its own).
GROWTH_COLUMNS = {
    "alerts": "raised_at",
    "dead_letters": "received_at",
}


def check_database(settings: Settings) -> dict[str, Any]:
    """What the database says about itself."""
    out: dict[str, Any] = {"ok": False}
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            out["server_version"] = server.version(conn)
            timescale = server.timescale_version(conn)
            out["timescaledb"] = {
                "installed": timescale is not None,
                "version": timescale,
                "edition": timescale_license(conn),
            }
            hyper = server.hypertables(conn) if timescale else []
            out["hypertables"] = hyper
            level = current_level(conn)
            latest = available()[-1].version
            out["migrations"] = {"level": level, "latest": latest, "pending": latest - level}
            out["ok"] = (
                bool(timescale)
                and level == latest
                and all(h in hyper for h in EXPECTED_HYPERTABLES)
            )
            out["storage"] = check_storage(conn, hyper)
            out["retention"] = check_retention(conn, settings.retention_days)
    except psycopg.Error as exc:
        out["error"] = str(exc).strip()
    return out


def check_storage(conn: psycopg.Connection[Any], hypertables: list[str]) -> dict[str, Any]:
    """Every table's size on disk (``hypertable_size`` for a hypertable, with its chunks,
    else the total relation size) and its growth: rows written in the last 24 hours
    where a time column says so, and for a hypertable the bytes per day of its whole
    chunks of the last week (each chunk's time range against its size)."""
    tables: dict[str, dict[str, Any]] = {}
    for name in server.tables(conn):
        t: dict[str, Any] = {"hypertable": name in hypertables}
        t["bytes"] = server.table_bytes(conn, name, t["hypertable"])
        column = GROWTH_COLUMNS.get(name)
        if t["hypertable"]:
            column = server.time_column(conn, name)
        if column:
            t["rows_last_24h"] = server.rows_between(conn, name, column)
        if t["hypertable"]:
            t.update(_chunk_growth(conn, name, str(column)))
        tables[name] = t
    total = sum(t["bytes"] for t in tables.values())
    return {"total_bytes": total, "tables": tables}


def _chunk_growth(conn: psycopg.Connection[Any], table: str, column: str) -> dict[str, Any]:
    """A hypertable's chunks, its oldest data, bytes per day from whole chunks, and the
    bytes of the last 24 hours (the chunks holding them, pro rata of their rows)."""
    rows = server.chunk_sizes(conn, table)
    now = server.now(conn)
    recent = [r for r in rows if r[1] <= now and r[0] >= now - timedelta(days=7)]
    days = sum((r[1] - r[0]).total_seconds() for r in recent) / 86400
    day = [r for r in rows if r[1] > now - timedelta(hours=24) and r[0] <= now]
    last_24h = None
    if day:
        held = server.rows_between(conn, table, column, day[0][0], day[-1][1])
        fresh = server.rows_between(conn, table, column)
        chunk_bytes = sum(int(r[2] or 0) for r in day)
        last_24h = round(chunk_bytes * fresh / held) if held else 0
    return {
        "chunks": len(rows),
        "oldest": rows[0][0].isoformat() if rows else None,
        "bytes_last_24h": last_24h,
        "bytes_per_day": round(sum(int(r[2] or 0) for r in recent) / days) if days else None,
        "days_measured": round(days, 2),
    }


def check_retention(conn: psycopg.Connection[Any], days: int | None) -> dict[str, Any]:
    """The retention set, and what a run now would drop (nothing is dropped here)."""
    if days is None:
        return {"days": None}
    now = server.now(conn)
    report = retention.run(conn, days, now, dry_run=True).as_json()
    conn.rollback()
    return {
        "days": days,
        "cutoff": report["cutoff"],
        "chunks_due": report["chunks_dropped"],
        "held_by": report["held_by"],
    }


def _size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def storage_lines(db: dict[str, Any]) -> list[str]:
    """The database report's sizes (largest first), growth and retention, as text."""
    out = []
    tables = db.get("storage", {}).get("tables", {})
    ranked = sorted(tables.items(), key=lambda kv: -int(kv[1]["bytes"]))
    for i, (name, t) in enumerate(ranked):
        growth = []
        if "rows_last_24h" in t:
            growth.append(f"{t['rows_last_24h']} rows in 24 h")
        if t.get("bytes_last_24h") is not None:
            growth.append(f"{_size(t['bytes_last_24h'])} in 24 h")
        if t.get("bytes_per_day") is not None:
            growth.append(f"{_size(t['bytes_per_day'])}/day over {t['days_measured']} days")
        more = f" ({', '.join(growth)})" if growth else ""
        out.append(f"{'' if i else 'storage:':<13}{name} {_size(t['bytes'])}{more}")
    ret = db.get("retention")
    if ret and ret.get("days"):
        held = ", ".join(h["mrn"] for h in ret["held_by"][:5]) or "nothing"
        out.append(
            f"retention:   {ret['days']} days, {ret['chunks_due']} chunks due; held by {held}"
        )
    elif ret is not None:
        out.append("retention:   none (TRANSIT_RETENTION_DAYS unset: telemetry is kept)")
    return out


def check_broker(settings: Settings, timeout: float = 5.0) -> dict[str, Any]:
    """Whether the broker accepts the backend's credentials (ingest user)."""
    result: dict[str, Any] = {"ok": False, "url": settings.mqtt_url}
    done = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["ok"] = not reason.is_failure
        result["reason"] = str(reason)
        done.set()

    client = make_client(settings, settings.mqtt_ingest_user, settings.mqtt_ingest_password)
    client.on_connect = on_connect
    try:
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
        client.loop_start()
        if not done.wait(timeout):
            result["error"] = "no CONNACK within the timeout"
        client.disconnect()
        client.loop_stop()
    except OSError as exc:
        result["error"] = str(exc)
    return result


def doctor(settings: Settings) -> dict[str, Any]:
    """The whole report; ``ok`` is true only when every part is."""
    db = check_database(settings)
    mq = check_broker(settings)
    return {"ok": bool(db["ok"] and mq["ok"]), "database": db, "broker": mq}
