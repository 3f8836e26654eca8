"""``transit doctor``: is the database up, with TimescaleDB, the schema, and the broker?"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg

from transit import retention
from transit.config import Settings
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
            out["server_version"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            out["timescaledb"] = {
                "installed": row is not None,
                "version": row[0] if row else None,
                "edition": timescale_license(conn),
            }
            hyper: list[str] = []
            if row:
                hyper = [
                    r[0]
                    for r in conn.execute(
                        "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
                    ).fetchall()
                ]
            out["hypertables"] = hyper
            level = current_level(conn)
            latest = available()[-1].version
            out["migrations"] = {"level": level, "latest": latest, "pending": latest - level}
            out["ok"] = (
                bool(row) and level == latest and all(h in hyper for h in EXPECTED_HYPERTABLES)
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
    names = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        # not an extension's own tables (PostGIS's spatial_ref_sys)
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
        "   AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1"
    ).fetchall()
    for (name,) in names:
        t: dict[str, Any] = {"hypertable": name in hypertables}
        size = "hypertable_size" if t["hypertable"] else "pg_total_relation_size"
        t["bytes"] = int(_scalar(conn, f"SELECT {size}(%s::regclass)", (name,)) or 0)
        column = GROWTH_COLUMNS.get(name)
        if t["hypertable"]:
            column = _scalar(
                conn,
                "SELECT column_name FROM timescaledb_information.dimensions"
                " WHERE hypertable_schema = 'public' AND hypertable_name = %s"
                " ORDER BY dimension_number LIMIT 1",
                (name,),
            )
        if column:
            t["rows_last_24h"] = int(
                _scalar(
                    conn,
                    f"SELECT count(*) FROM {name}"
                    f" WHERE {column} > now() - interval '24 hours' AND {column} <= now()",
                )
            )
        if t["hypertable"]:
            t.update(_chunk_growth(conn, name, str(column)))
        tables[name] = t
    total = sum(t["bytes"] for t in tables.values())
    return {"total_bytes": total, "tables": tables}


def _chunk_growth(conn: psycopg.Connection[Any], table: str, column: str) -> dict[str, Any]:
    """A hypertable's chunks, its oldest data, bytes per day from whole chunks, and the
    bytes of the last 24 hours (the chunks holding them, pro rata of their rows)."""
    rows = conn.execute(
        "SELECT c.range_start, c.range_end, s.total_bytes"
        " FROM timescaledb_information.chunks c JOIN chunks_detailed_size(%s::regclass) s"
        " ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name"
        " WHERE c.hypertable_schema = 'public' AND c.hypertable_name = %s"
        " ORDER BY c.range_start",
        (table, table),
    ).fetchall()
    now = _scalar(conn, "SELECT now()")
    recent = [r for r in rows if r[1] <= now and r[0] >= now - timedelta(days=7)]
    days = sum((r[1] - r[0]).total_seconds() for r in recent) / 86400
    day = [r for r in rows if r[1] > now - timedelta(hours=24) and r[0] <= now]
    last_24h = None
    if day:
        held = _scalar(
            conn,
            f"SELECT count(*) FROM {table} WHERE {column} >= %s AND {column} < %s",
            (day[0][0], day[-1][1]),
        )
        fresh = _scalar(
            conn,
            f"SELECT count(*) FROM {table}"
            f" WHERE {column} > now() - interval '24 hours' AND {column} <= now()",
        )
        chunk_bytes = sum(int(r[2] or 0) for r in day)
        last_24h = round(chunk_bytes * fresh / held) if held else 0
    return {
        "chunks": len(rows),
        "oldest": rows[0][0].isoformat() if rows else None,
        "bytes_last_24h": last_24h,
        "bytes_per_day": round(sum(int(r[2] or 0) for r in recent) / days) if days else None,
        "days_measured": round(days, 2),
    }


def _scalar(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql.encode(), params).fetchone()
    return row[0] if row else None


def check_retention(conn: psycopg.Connection[Any], days: int | None) -> dict[str, Any]:
    """The retention set, and what a run now would drop (nothing is dropped here)."""
    if days is None:
        return {"days": None}
    now = _scalar(conn, "SELECT now()")
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
