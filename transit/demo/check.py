"""``transit demo --check``: the demo's path, bounded, with a verdict.

The same steps as the demo (schema, network, keys, services, trackers registered,
transits declared and released over HTTP, the simulator reporting from the offices
of departure), with a short reporting period, until fixes are stored, a truck has
departed (ingest recorded it in the transit's timeline) and an alert is raised.
Exit 0 then; otherwise 1 with what did not happen. Every process it started is
stopped either way.

Event time stays the wall clock (one report a second) rather than running ahead: a
fix from the future is not what a tracker sends, and release checks that the
tracker reported in the last minutes of real time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from firmware_sim.scenario import TruckPlan
from transit.config import Settings
from transit.demo.cluster import INGEST_WORKERS, MQTT_VERSION, ClusterStack, bring_up
from transit.demo.office import ApiError, CustomsOffice
from transit.demo.prepare import Plan, fixes_stored, prepare, put_under_way, say, start_services
from transit.demo.stack import OwnBroker, Services, api_answer, free_port

INTERVAL_S = 1.0
DEPART_AFTER_S = 5.0


@dataclass
class Verdict:
    """What the check saw by the time it stopped looking."""

    declared: int = 0
    released: int = 0
    fixes: int = 0
    departed: int = 0
    alerts: int = 0
    first_alert: str = ""

    def missing(self, refused: str = "") -> list[str]:
        """What did not happen, in words; empty when everything did. ``refused``: what
        the API said when it refused a release."""
        out = []
        if not self.fixes:
            out.append("no fix was stored")
        if not self.departed:
            why = ""
            if self.released < self.declared:
                why = f" ({self.declared - self.released} of {self.declared} not released"
                why += f"; {refused})" if refused else ")"
            out.append("no truck departed" + why)
        if not self.alerts:
            out.append("no alert was raised")
        return out

    def figures(self) -> str:
        """The figures on one line."""
        return (
            f"{self.declared} declared, {self.released} released, {self.fixes} fixes stored,"
            f" {self.departed} departed, {self.alerts} alerts"
            + (f" (first: {self.first_alert})" if self.first_alert else "")
        )


class Progress:
    """Each step of the path, said once, when it is first seen."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def seen(self, v: Verdict) -> list[str]:
        """The steps reached since the last call."""
        steps = {
            "released": (v.declared and v.released == v.declared, "every transit released"),
            "fixes": (v.fixes > 0, "fixes stored"),
            "departed": (v.departed > 0, "a truck departed"),
            "alert": (v.alerts > 0, f"an alert raised: {v.first_alert}"),
        }
        new = [text for key, (done, text) in steps.items() if done and key not in self.said]
        self.said |= {key for key, (done, _) in steps.items() if done}
        return new


def run_check(
    settings: Settings,
    trucks: int,
    seed: int,
    timeout: float,
    port: int | None = None,
    own_broker: bool = False,
    without: frozenset[str] = frozenset(),
    cluster: bool = False,
) -> int:
    """Run the demo's path until it has shown fixes, a departure and an alert (0), or
    until ``timeout`` seconds have passed or a service exited (1, with the reason).
    With ``cluster``, on the clustered stack (transit/demo/cluster.py); ``timeout``
    counts from once it is up."""
    stack: ClusterStack | None = None
    if cluster:
        try:
            stack = bring_up(settings, say)
        except (OSError, RuntimeError) as exc:
            say(f"demo check: FAILED: the cluster did not come up: {exc}")
            return 1
    t0 = time.monotonic()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="democheck-", dir=settings.run_dir))
    work.chmod(0o755)  # the broker's own user reads its files under it
    (work / "logs").mkdir()
    env = os.environ.copy()
    broker: OwnBroker | None = None
    if own_broker:
        # The check's own run directory: its broker's files, the shared geodata and web.
        for shared in ("geodata", "web"):
            (work / shared).symlink_to(settings.run_dir / shared)
        broker = OwnBroker(work, free_port())
        mqtt_url = f"mqtt://127.0.0.1:{broker.port}"
        env |= {"TRANSIT_RUN_DIR": str(work), "TRANSIT_MQTT_URL": mqtt_url}
        settings = settings.model_copy(update={"run_dir": work, "mqtt_url": mqtt_url})
    port = port or free_port()
    base = f"http://{settings.api_host}:{port}"
    if stack is not None:
        settings, base, env = stack.settings, stack.base, stack.env
    services = Services(env, log_dir=work / "logs")
    verdict = Verdict()
    say(f"demo check: {trucks} trucks, API at {base}, at most {timeout:.0f} s")
    try:
        plan = Plan(trucks, seed, INTERVAL_S, DEPART_AFTER_S, MQTT_VERSION if stack else "5")
        fleet = plan.fleet()
        demo_keys, known = prepare(settings, fleet)
        if broker is not None:
            broker.start(settings, known)
        if stack is not None:
            stack.register(fleet)
            services.start("ingest", "ingest", "--workers", str(INGEST_WORKERS))
            failure = api_answer(base, None, t0 + timeout)
        else:
            start_services(services, port, without)
            failure = api_answer(base, services.procs["api"], t0 + timeout)
        if failure is None:
            with httpx.Client(base_url=base, timeout=10.0) as client:
                office = CustomsOffice(
                    client, demo_keys.admin, demo_keys.officers, demo_keys.control_room
                )
                since = put_under_way(office, plan, fleet, services, sim="sim" not in without)
                failure = _watch(settings, office, fleet, since, services, verdict, t0, timeout)
                failure = failure or _missing(verdict, office)
    except (OSError, RuntimeError, httpx.HTTPError, psycopg.Error, ApiError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        services.stop()
        if broker is not None:
            broker.stop()
        if stack is not None:
            stack.stop()
    if failure:
        return _fail(failure, verdict, services, work, t0)
    say(f"demo check: ok in {time.monotonic() - t0:.1f} s: {verdict.figures()}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _watch(
    settings: Settings,
    office: CustomsOffice,
    fleet: list[TruckPlan],
    since: datetime,
    services: Services,
    verdict: Verdict,
    t0: float,
    timeout: float,
) -> str | None:
    """Release what the API lets go, and look, until everything was seen or time is up.
    Returns why it stopped early (a service exited), else None."""
    progress = Progress()
    verdict.declared = len(office.transits)
    while True:
        gone = services.exited()
        if gone:
            return "; ".join(f"{name} exited with code {code}" for name, code in gone.items())
        verdict.released = office.release_ready()
        verdict.fixes = fixes_stored(settings, fleet, since)
        verdict.departed = len(office.departed())
        alerts = office.alerts()
        verdict.alerts = len(alerts)
        if alerts:
            verdict.first_alert = f"{alerts[-1][0]} on {alerts[-1][1]}"
        for news in progress.seen(verdict):
            say(f"demo check: {time.monotonic() - t0:5.1f} s  {news}")
        if not verdict.missing() or time.monotonic() > t0 + timeout:
            return None
        time.sleep(0.5)


def _missing(verdict: Verdict, office: CustomsOffice) -> str | None:
    """What did not happen, with the API's words for a refused release."""
    refused = next((t for t in office.transits if t.refused), None)
    said = f"the API said for {refused.mrn}: {'; '.join(refused.refused)}" if refused else ""
    return "; ".join(verdict.missing(said)) or None


def _fail(reason: str, verdict: Verdict, services: Services, work: Path, t0: float) -> int:
    say(
        f"demo check: FAILED after {time.monotonic() - t0:.1f} s: {reason}\n"
        f"  seen: {verdict.figures()}\n  logs: {work / 'logs'}"
    )
    for name in services.procs:
        tail = services.log_tail(name)
        if tail:
            say(f"  --- {name} (last lines) ---\n" + "\n".join(f"  {x}" for x in tail.splitlines()))
    return 1
