"""``transit demo``: the stack with a simulated fleet, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime

import httpx
import psycopg

from firmware_sim.scenario import TruckPlan
from transit.config import Settings
from transit.demo.cluster import (
    INGEST_WORKERS,
    MQTT_VERSION,
    ClusterStack,
    bring_up,
)
from transit.demo.office import ApiError, CustomsOffice
from transit.demo.prepare import Plan, fixes_stored, prepare, put_under_way, say, start_services
from transit.demo.stack import Services, api_answer

INTERVAL_S = 10.0  # each tracker reports every ten seconds
DEPART_AFTER_S = 30.0  # and stands this long at its office before driving off
STATUS_EVERY_S = 10.0


def run_demo(
    settings: Settings,
    trucks: int,
    seed: int,
    port: int | None = None,
    without: frozenset[str] = frozenset(),
    cluster: bool = False,
) -> int:
    """Start everything, put the fleet under way, print where to look and what is
    happening every ten seconds; restart a service that exits; stop on Ctrl-C.
    With ``cluster``, on the clustered stack (transit/demo/cluster.py).
    Returns 1, having said why, when the stack cannot be set going."""
    plan = Plan(trucks, seed, INTERVAL_S, DEPART_AFTER_S, MQTT_VERSION if cluster else "5")
    fleet = plan.fleet()
    port = port or settings.api_port
    base = f"http://{settings.api_host}:{port}"
    services = Services(os.environ.copy())
    stack: ClusterStack | None = None
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if cluster:
            stack = bring_up(settings, say)
            settings, base, services = stack.settings, stack.base, Services(stack.env)
            demo_keys, _ = prepare(settings, fleet)
            stack.register(fleet)
            services.start("ingest", "ingest", "--workers", str(INGEST_WORKERS))
            reason = api_answer(base, None, time.monotonic() + 60)
        else:
            demo_keys, _ = prepare(settings, fleet)
            start_services(services, port, without)
            reason = api_answer(base, services.procs["api"], time.monotonic() + 60)
        if reason:
            say(f"demo: {reason}")
            return 1
        with httpx.Client(base_url=base, timeout=10.0) as client:
            office = CustomsOffice(
                client, demo_keys.admin, demo_keys.officers, demo_keys.control_room
            )
            since = put_under_way(office, plan, fleet, services, sim="sim" not in without)
            say(
                f"\ntransit demo: {trucks} simulated trucks on three ACTS corridors"
                " (SG, MY, TH, LA), declared at their offices of departure and released"
                " once their trackers report and their seals are armed\n"
                f"  control room  {base}/map   (sign in with the control room key below)\n"
                f"  API docs      {base}/docs\n"
                f"  alerts        {base}/api/v1/alerts   (header X-API-Key)\n"
                f"  health        {base}/health\n"
                + "".join(f"  key {role:<16} {key}\n" for role, key in demo_keys.printed.items())
                + (_cluster_text(stack) if stack else "")
                + "Ctrl-C stops everything."
            )
            _follow(settings, office, fleet, since, services, stop)
    except (OSError, RuntimeError, httpx.HTTPError, psycopg.Error, ApiError) as exc:
        say(f"demo: {type(exc).__name__}: {exc}")
        return 1
    finally:
        services.stop()
        if stack is not None:
            stack.stop()
        say("demo: stopped")
    return 0


def _cluster_text(stack: ClusterStack) -> str:
    """Where the cluster's nodes are and how they stand, for the banner."""
    from transit.cluster.doctor import check_cluster, cluster_lines

    report = check_cluster(stack.settings)
    return (
        "cluster (transit doctor --cluster; broker and database stay up after Ctrl-C:"
        " make cluster-down cluster-db-down):\n"
        + "".join(f"  {line}\n" for line in cluster_lines(report))
    )


def _follow(
    settings: Settings,
    office: CustomsOffice,
    fleet: list[TruckPlan],
    since: datetime,
    services: Services,
    stop: threading.Event,
) -> None:
    """Until ``stop``: release what the API lets go, restart a service that exited,
    and say every ten seconds how the fleet is doing."""
    next_status = time.monotonic() + STATUS_EVERY_S
    released = 0
    while not stop.wait(0.5):
        for name, code in services.exited().items():
            if stop.is_set():  # Ctrl-C reaches the services too: they are on their way out
                return
            say(f"demo: {name} exited ({code}); restarting")
            services.restart(name)
        try:
            if released < len(fleet):
                released = office.release_ready()
            if time.monotonic() >= next_status:
                next_status += STATUS_EVERY_S
                say(_status(settings, office, fleet, since))
        except (OSError, httpx.HTTPError, psycopg.Error, ApiError) as exc:
            say(f"demo: waiting for the stack ({exc})")


def _status(
    settings: Settings,
    office: CustomsOffice,
    fleet: list[TruckPlan],
    since: datetime,
) -> str:
    """One line: fixes stored, transits released and departed, alerts, the newest."""
    fixes = fixes_stored(settings, fleet, since)
    released = sum(t.released for t in office.transits)
    departed = len(office.departed())
    alerts = office.alerts()
    newest = f"; newest alert: {alerts[0][0]} {alerts[0][1]}" if alerts else ""
    waiting = ""
    if released < len(office.transits):
        reasons = {r for t in office.transits for r in t.refused}
        waiting = f" (release waits: {'; '.join(sorted(reasons)[:2])})" if reasons else ""
    return (
        f"demo: {fixes} fixes stored, {released} of {len(office.transits)} transits released"
        f"{waiting}, {departed} departed, {len(alerts)} alerts{newest}"
    )
