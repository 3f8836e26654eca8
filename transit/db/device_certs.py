"""Device certificates (table ``device_certs``): what the device CA issued, to whom,
valid when, revoked when; and which devices still log in with a password."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from transit.db.query import Conn, rows, run, value


def add(
    conn: Conn,
    serial: str,
    device_id: str,
    not_before: datetime,
    not_after: datetime,
    cert_pem: str,
) -> None:
    """Record an issued certificate (the device is registered already)."""
    run(
        conn,
        "INSERT INTO device_certs (serial, device_id, not_before, not_after, cert_pem)"
        " VALUES (%s, %s, %s, %s, %s)",
        (serial, device_id, not_before, not_after, cert_pem),
    )


def has_any(conn: Conn, device_id: str) -> bool:
    """Whether the device was ever issued a certificate (it then logs in with one only)."""
    return bool(
        value(conn, "SELECT EXISTS (SELECT 1 FROM device_certs WHERE device_id = %s)", (device_id,))
    )


def for_device(conn: Conn, device_id: str) -> list[dict[str, Any]]:
    """The device's certificates, newest first: serial, validity, issued, revoked."""
    return rows(
        conn,
        "SELECT serial, not_before, not_after, issued_at, revoked_at FROM device_certs"
        " WHERE device_id = %s ORDER BY issued_at DESC, serial",
        (device_id,),
    )


def revoke(conn: Conn, device_id: str, at: datetime, serial: str | None = None) -> list[str]:
    """Revoke the device's certificates not yet revoked (or only ``serial``); the
    serials revoked now."""
    found = rows(
        conn,
        "UPDATE device_certs SET revoked_at = %s WHERE device_id = %s AND revoked_at IS NULL"
        " AND (%s::text IS NULL OR serial = %s) RETURNING serial",
        (at, device_id, serial, serial),
    )
    return [r["serial"] for r in found]


def revoked(conn: Conn, now: datetime) -> list[tuple[str, datetime]]:
    """(serial, revoked_at) of every revoked certificate still within its validity: what
    the CRL lists (an expired certificate is refused without it)."""
    return [
        (r["serial"], r["revoked_at"])
        for r in rows(
            conn,
            "SELECT serial, revoked_at FROM device_certs"
            " WHERE revoked_at IS NOT NULL AND not_after > %s ORDER BY revoked_at, serial",
            (now,),
        )
    ]


BROKER_FILES_LOCK = 0x7B0F11  # pg_advisory_xact_lock key: one broker-file rewrite at a time


def lock_broker_files(conn: Conn) -> None:
    """Until the transaction ends, be the one process rewriting the broker's password
    file: with several API processes, the last to write then wrote the newest list."""
    run(conn, "SELECT pg_advisory_xact_lock(%s)", (BROKER_FILES_LOCK,))


def password_device_ids(conn: Conn) -> list[str]:
    """The devices that log in with a password: those never issued a certificate."""
    return [
        r["device_id"]
        for r in rows(
            conn,
            "SELECT d.device_id FROM devices d WHERE NOT EXISTS"
            " (SELECT 1 FROM device_certs c WHERE c.device_id = d.device_id) ORDER BY 1",
        )
    ]


def table_exists(conn: Conn) -> bool:
    """Whether the migration that makes ``device_certs`` has run."""
    return value(conn, "SELECT to_regclass('device_certs')") is not None


def registered_count(conn: Conn) -> int:
    """How many devices are registered, with either credential."""
    return int(value(conn, "SELECT count(*) FROM devices"))


def bulk_register(
    conn: Conn, device_ids: list[str], cert_pem: str | None, not_before: datetime, days: int
) -> None:
    """Register many trackers in one COPY; with ``cert_pem``, each with a certificate row
    (its serial the SHA-1 of the id): a benchmark's fleet, not a real issue."""
    with conn.cursor() as cur:
        with cur.copy("COPY devices (device_id, kind) FROM STDIN") as cp:
            for d in device_ids:
                cp.write_row((d, "tracker"))
        if cert_pem is None:
            return
        not_after = not_before + timedelta(days=days)
        cols = "serial, device_id, not_before, not_after, cert_pem"
        with cur.copy(f"COPY device_certs ({cols}) FROM STDIN") as cp:
            for d in device_ids:
                serial = hashlib.sha1(d.encode()).hexdigest()
                cp.write_row((serial, d, not_before, not_after, cert_pem))


def delete_devices(conn: Conn, prefix: str) -> int:
    """Delete the devices whose id starts with ``prefix`` (their certificates go with
    them); how many."""
    return run(conn, "DELETE FROM devices WHERE starts_with(device_id, %s)", (prefix,))
