"""A database made ready for a run of the detection catalogue's trucks: emptied of what
an earlier run left, the bundled network imported, the fleet provisioned, each
scenario's own thresholds on its transit (the scaling and cluster tests share it)."""

from __future__ import annotations

import psycopg

from firmware_sim.catalogue import Scenario
from firmware_sim.scenario import TruckPlan
from transit.config import Settings
from transit.db.migrate import migrate
from transit.geofence.corridor import acts_network
from transit.provision import import_geojson, provision_fleet


def provision_catalogue(
    settings: Settings, scenarios: list[Scenario], plans: list[TruckPlan]
) -> None:
    """Empty the run's tables, then import the network and provision ``plans``."""
    with psycopg.connect(settings.database_url) as conn:
        migrate(conn)
        conn.execute(
            "TRUNCATE fixes, seal_events, filtered_fixes, dead_letters, alerts, transits,"
            " devices, corridors, offices, ingest_workers, audit_log, transit_events,"
            " rule_state, pending_messages CASCADE"
        )
        for table in ("raw_messages", "ingest_slots", "leases"):
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,):
                conn.execute(f"TRUNCATE {table}")
        conn.commit()
        import_geojson(conn, acts_network())
        provision_fleet(conn, plans)
        for s in scenarios:
            if s.thresholds:
                conn.execute(
                    "UPDATE transits SET details = coalesce(details, '{}')"
                    " || jsonb_build_object('thresholds', %s::jsonb) WHERE mrn = %s",
                    (psycopg.types.json.Jsonb(s.thresholds), s.plan.mrn),
                )
        conn.commit()
