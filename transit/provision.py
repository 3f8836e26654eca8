"""Loading reference data and simulated fleets into the database and the broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from transit import broker
from transit.config import Settings
from transit.db import corridors, devices, offices, rule_state, transits
from transit.db.store import Conn
from transit.geofence.corridor import load_geojson

if TYPE_CHECKING:
    from firmware_sim.scenario import TruckPlan


def import_geojson(conn: Conn, doc: dict[str, Any]) -> tuple[int, int]:
    """Upsert the corridors and offices of a FeatureCollection. Returns their counts."""
    found_corridors, found_offices = load_geojson(doc)
    with conn.transaction():
        for o in found_offices:
            offices.upsert(conn, o)
        for c in found_corridors:
            corridors.upsert(conn, c)
    return len(found_corridors), len(found_offices)


def provision_fleet(
    conn: Conn, plans: list[TruckPlan], hours: float = 72, first_seq: int = 1
) -> None:
    """Register each plan's tracker and write its transit as under way, skipping
    declaration and release: a shortcut for tests, benchmarks and ``transit sim
    --provision``. ``transit demo`` goes through the API as a customs office does.
    ``first_seq`` is the seq of the trackers' first message, which the rules take
    first (the release checks would have heard the one before)."""
    limit = datetime.now(UTC) + timedelta(hours=hours)
    with conn.transaction():
        for p in plans:
            devices.register(conn, p.device_id, "tracker")
            transits.declare(
                conn,
                mrn=p.mrn,
                tracker_id=p.device_id,
                corridor_id=p.corridor_id,
                office_departure=p.office_departure,
                offices_transit=p.offices_transit,
                office_destination=p.office_destination,
                countries=p.countries,
                time_limit=limit,
                seal_ids=p.seal_ids,
                vehicle=f"SIM {p.device_id}",
                status="in_transit",
            )
            transits.finish_other_transits(conn, p.device_id, p.mrn)
            rule_state.start_over(conn, p.device_id, p.mrn, first_seq - 1)


def sync_broker(conn: Conn, settings: Settings, reload: bool = True) -> int:
    """Rewrite the broker's password file and ACL from the devices; reload it."""
    ids = devices.ids(conn)
    conn.commit()
    directory = settings.run_dir / "mosquitto"
    broker.write_files(settings, ids, directory)
    if reload:
        broker.reload(directory)
    return len(ids)
