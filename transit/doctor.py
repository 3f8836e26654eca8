"""``transit doctor``: is the database up, with TimescaleDB, the schema, and the broker?"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from transit.config import Settings
from transit.db.migrate import available, current_level, timescale_license
from transit.mqtt import make_client

EXPECTED_HYPERTABLES = ("fixes", "seal_events")


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
    except psycopg.Error as exc:
        out["error"] = str(exc).strip()
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
