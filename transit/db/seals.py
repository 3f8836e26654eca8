"""Electronic seals (table ``seals``): registered with their manufacturer and serial
(ISO 18185), the tracker they report through, armed at a release and disarmed at a
closure. What they report is telemetry (:mod:`transit.db.telemetry`)."""

from __future__ import annotations

from typing import Any

from transit.db.query import Conn, rows, run


def list_all(conn: Conn) -> list[dict[str, Any]]:
    """Every seal: manufacturer, serial, tracker, status, whether armed."""
    return rows(
        conn,
        "SELECT seal_id, manufacturer, serial, tracker_id, status, armed, registered_at"
        " FROM seals ORDER BY seal_id",
    )


def register(
    conn: Conn, seal_id: str, manufacturer: str, serial: str, tracker_id: str | None
) -> None:
    """Register a seal, or update its manufacturer, serial and tracker."""
    run(
        conn,
        "INSERT INTO seals (seal_id, manufacturer, serial, tracker_id) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (seal_id) DO UPDATE SET manufacturer = EXCLUDED.manufacturer,"
        " serial = EXCLUDED.serial, tracker_id = EXCLUDED.tracker_id",
        (seal_id, manufacturer, serial, tracker_id),
    )


def arm(conn: Conn, seal_ids: list[str], tracker_id: str) -> None:
    """Arm the seals on this tracker (a seal not registered is, by its id)."""
    for seal in seal_ids:
        run(
            conn,
            "INSERT INTO seals (seal_id, manufacturer, serial, tracker_id, status, armed)"
            " VALUES (%s, '', %s, %s, 'sealed', true) ON CONFLICT (seal_id) DO UPDATE SET"
            " tracker_id = EXCLUDED.tracker_id, status = 'sealed', armed = true",
            (seal, seal, tracker_id),
        )


def disarm(conn: Conn, seal_ids: list[str]) -> None:
    """Disarm the seals."""
    run(
        conn,
        "UPDATE seals SET armed = false, status = 'disarmed' WHERE seal_id = ANY(%s)",
        (seal_ids,),
    )
