"""One watchdog across all ingest workers: the process holding the lease dies, another
takes it, and silence is still found, from what every worker wrote. On a broker and a
database of the tests' own (tests/elastic_stack.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from tests.elastic_stack import PLANS, Workers, db_now, own_stack, running, wait_for
from transit.broker import device_password
from transit.config import Settings
from transit.db import membership
from transit.devices import payload as wire
from transit.mqtt import make_client
from transit.provision import provision_fleet


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Settings]:
    yield from own_stack(settings)


def test_the_watchdog_moves_when_its_process_dies_and_still_finds_silence(
    stack, tmp_path, capsys
) -> None:
    url = stack.database_url
    group = "elastic-wd"
    workers = Workers(stack, group, tmp_path)
    ids = [f"wd-{i}" for i in range(3)]
    plan = PLANS[0]
    try:
        for cid in ids:
            workers.start(cid)
        wait_for("three workers running", lambda: running(url, group, ids), 60)

        def holder() -> str | None:
            with psycopg.connect(url, autocommit=True) as conn:
                found = membership.lease_holder(conn, membership.WATCHDOG)
            if found and found[0] in workers.procs:
                proc = workers.procs[found[0]]
                if proc.pid == found[1] and proc.poll() is None:
                    return found[0]
            return None

        first = wait_for("a worker holding the watchdog lease", holder, 30)
        killed_at = db_now(url)
        workers.signal(first, signal.SIGKILL)
        workers.wait(first)
        second = wait_for("another worker taking the lease", holder, 30)
        with psycopg.connect(url, autocommit=True) as conn:
            taken_at = conn.execute(
                "SELECT acquired_at FROM leases WHERE name = %s", (membership.WATCHDOG,)
            ).fetchone()[0]
            # A transit whose tracker is silent after three reporting periods of a second.
            provision_fleet(conn, [plan])
            conn.execute(
                "UPDATE transits SET details = details || %s::jsonb WHERE mrn = %s",
                ('{"thresholds": {"reporting_period_s": 1, "signal_lost_periods": 3}}', plan.mrn),
            )
        truck = plan.truck(0, interval_s=1.0)
        dev = make_client(
            stack, plan.device_id, device_password(stack.device_secret, plan.device_id)
        )
        dev.connect(stack.mqtt_host, stack.mqtt_port)
        dev.loop_start()
        for seq in range(1, 4):
            tel, _ = truck.step(datetime.now(UTC))
            if tel is not None:
                msg = wire.TelemetryV1(v=1, seq=seq, fixes=tel.fixes)
                dev.publish(wire.topic_for(plan.device_id, "telemetry"), wire.encode(msg), 1)
            time.sleep(1)
        dev.disconnect()
        dev.loop_stop()

        def signal_lost() -> bool:
            with psycopg.connect(url, autocommit=True) as conn:
                return bool(
                    conn.execute(
                        "SELECT 1 FROM alerts WHERE mrn = %s AND type = 'signal_lost'",
                        (plan.mrn,),
                    ).fetchone()
                )

        wait_for("a signal_lost alert from the new watchdog", signal_lost, 40)
        holders = [c for c in ids if "holds the watchdog lease" in workers.log(c)]
    finally:
        workers.stop_all()
    with capsys.disabled():
        print(
            f"\nwatchdog: {first} SIGKILLed, {second} took the lease"
            f" {(taken_at - killed_at).total_seconds():.1f} s later"
        )
    assert second != first
    assert sorted(holders) == sorted([first, second])
