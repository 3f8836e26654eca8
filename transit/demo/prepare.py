"""What the demo and its check share: the database made ready (schema, the bundled ACTS
network, keys), the services started, and the fleet put under way by the customs
office over HTTP while the simulator reports from the offices of departure."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from firmware_sim.scenario import TruckPlan, fleet_plan
from transit import keys
from transit.config import Settings
from transit.db import telemetry
from transit.db.devices import ids as device_ids
from transit.db.migrate import migrate
from transit.demo.office import CustomsOffice, run_mrns
from transit.demo.stack import Services
from transit.geofence.corridor import acts_network
from transit.provision import import_geojson

# The customs office's requests are the demo's business, not a log line each.
logging.getLogger("httpx").setLevel(logging.WARNING)


def say(text: str) -> None:
    """One line for the person watching, at once."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Plan:
    """A run of the demo: the fleet, its reporting period, and how long each truck stands
    at its office of departure (reporting, seals armed) before it drives off."""

    trucks: int
    seed: int
    interval_s: float
    depart_after_s: float
    mqtt_version: str = "5"  # the cluster profile's RabbitMQ speaks 3.1.1

    def fleet(self) -> list[TruckPlan]:
        """The simulated trucks, as ``transit sim`` will drive them."""
        return fleet_plan(
            acts_network(), self.trucks, seed=self.seed, depart_after_s=self.depart_after_s
        )

    def sim_args(self) -> tuple[str, ...]:
        """``transit sim`` publishing only: no database, no provisioning."""
        return (
            "sim",
            "--trucks",
            str(self.trucks),
            "--seed",
            str(self.seed),
            "--interval",
            str(self.interval_s),
            "--depart-after",
            str(self.depart_after_s),
            "--mqtt-version",
            self.mqtt_version,
        )


@dataclass(frozen=True)
class Keys:
    """The keys the demo prints (one per role a person may try), the admin's, and one
    officer's per office of departure (the office that declares and releases there)."""

    printed: dict[str, str]
    admin: str
    control_room: str
    officers: dict[str, str]


def prepare(settings: Settings, fleet: list[TruckPlan]) -> tuple[Keys, list[str]]:
    """Migrate (a no-op when up to date), load the bundled ACTS network, make the keys.

    Returns the keys and the devices already registered."""
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        migrate(conn)
        import_geojson(conn, acts_network())

        def make(role: str, office: str | None = None, country: str | None = None) -> str:
            return keys.create(conn, role, office, country, label="demo", actor="demo")

        printed = {
            "control room": make("control_room"),
            "admin": make("admin"),
            "officer THBKK001": make("officer", office="THBKK001"),
            "partner TH": make("partner", country="TH"),
        }
        officers = {
            o: make("officer", office=o) for o in sorted({p.office_departure for p in fleet})
        }
        conn.commit()
        known = device_ids(conn)
    k = Keys(printed, printed["admin"], printed["control room"], officers)
    return k, known


def start_services(services: Services, port: int, without: frozenset[str]) -> None:
    """The API on ``port``, ingest and the partner notifier (less those ``without``)."""
    services.start("api", "api", "--port", str(port))
    for name in ("ingest", "notify"):
        if name not in without:
            services.start(name, name)


def put_under_way(
    office: CustomsOffice, plan: Plan, fleet: list[TruckPlan], services: Services, sim: bool
) -> datetime:
    """Register the trackers, withdraw what an earlier run left open on them, declare
    this run's transits, then start the simulator (the trucks report from their offices
    of departure with their seals armed). Releasing follows, once the API agrees.
    Returns when the run started."""
    now = datetime.now(UTC)
    ids = [p.device_id for p in fleet]
    new = office.register(ids)
    withdrawn = office.withdraw_earlier(ids)
    office.declare(fleet, run_mrns(fleet, now), now)
    say(
        f"demo: {new} trackers registered, {withdrawn} transits of an earlier run withdrawn,"
        f" {len(fleet)} transits declared"
    )
    if sim:
        services.start("sim", *plan.sim_args())
    return now


def fixes_stored(settings: Settings, fleet: list[TruckPlan], since: datetime) -> int:
    """Fixes stored for the fleet's trackers since ``since``."""
    with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
        return telemetry.fixes_since(conn, [p.device_id for p in fleet], since)
