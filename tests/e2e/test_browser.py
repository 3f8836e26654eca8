"""The control room in a real browser: Playwright driving Debian's Chromium against
the running stack (API, ingest worker, broker, database and a simulated fleet)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pytest
from playwright.sync_api import Page, sync_playwright

from firmware_sim.fleet import Fleet
from firmware_sim.scenario import fleet_plan
from tests.conftest import ROOT, free_port, put_under_way
from transit import keys
from transit.geofence.corridor import acts_network

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / ".run" / "screenshots"


def start_api(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "transit.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
    )
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API did not start")


@pytest.fixture
def stack(request, settings, db, ingest, close_transits):
    """Six trucks reporting every second on the three corridors, and the API. Each
    test has its own trucks and transits (a seed from its name)."""
    network = acts_network()
    seed = 400 + sum(request.node.name.encode()) % 500
    plans = fleet_plan(network, 6, seed=seed, traffic=False)
    close_transits.extend(p.mrn for p in plans)
    put_under_way(db, settings, plans)
    with psycopg.connect(settings.database_url) as conn:
        key = keys.create(conn, "control_room", label="browser test")
        conn.commit()
    fleet = Fleet(settings, [p.truck(i, 1.0) for i, p in enumerate(plans)], realtime=True)
    fleet.connect()
    stop = threading.Event()
    runner = threading.Thread(target=fleet.run, kwargs={"stop": stop}, daemon=True)
    runner.start()
    port = free_port()
    api = start_api(port)
    state = {"api": api, "port": port, "fleet": fleet, "plans": plans, "key": key}
    yield state
    stop.set()
    runner.join(10)
    fleet.close()
    state["api"].terminate()
    state["api"].wait(10)


def positions(page: Page) -> dict[str, list[float]]:
    return page.evaluate(
        "() => Object.fromEntries([...window.transitMap.trucks.values()]"
        ".map(t => [t.mrn, [t.lon, t.lat]]))"
    )


def test_control_room_sees_trucks_move_and_works_a_seal_breach(stack, db, capsys) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    plans = stack["plans"]
    url = f"http://127.0.0.1:{stack['port']}/map"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(url)
        page.fill("#key", stack["key"])
        page.click("#signin-form button")
        page.wait_for_selector("#link.up", timeout=15_000)
        # Every truck of the fleet appears, and they move.
        page.wait_for_function(
            f"() => window.transitMap.trucks.size >= {len(plans)}", timeout=20_000
        )
        mine = {p.mrn for p in plans}
        before = {m: v for m, v in positions(page).items() if m in mine}
        assert set(before) == mine
        page.wait_for_timeout(3_000)
        after = positions(page)
        moved = [m for m in mine if after[m] != before[m]]
        assert len(moved) >= len(plans) - 1, (before, after)
        page.screenshot(path=str(SHOTS / "map-fleet.png"))

        # The simulator cuts a seal: the alert is in the panel within two seconds.
        victim = plans[2]
        stack["fleet"].inject_breach(victim.device_id)
        t0 = time.monotonic()
        item = f"#alerts li[data-mrn='{victim.mrn}'].critical"
        page.wait_for_selector(item, timeout=2_000)
        delay = time.monotonic() - t0
        with capsys.disabled():
            print(f"\nbrowser: seal breach shown in the panel {delay:.2f} s after it was sent")
        assert "seal tampered" in page.inner_text(item)
        # Closer, to see the trucks on their corridor: the screenshot of the docs.
        page.evaluate(
            f"() => {{ const t = window.transitMap.trucks.get('{victim.mrn}');"
            " window.transitMap.map.setView([t.lat, t.lon], 8); }"
        )
        page.wait_for_timeout(1_500)
        page.screenshot(path=str(SHOTS / "map-alert.png"))

        # Filters: another corridor hides the truck's alert, all corridors show it again.
        other = next(c for c in ("SG-MY-KUL", "MY-TH-BKK", "TH-LA-VTE") if c != victim.corridor_id)
        page.select_option("#f-corridor", other)
        page.wait_for_selector(item, state="detached", timeout=2_000)
        page.select_option("#f-corridor", "")
        page.wait_for_selector(item, timeout=2_000)
        page.select_option("#f-country", "LA" if "LA" not in victim.countries else "SG")
        page.wait_for_selector(item, state="detached", timeout=2_000)
        page.select_option("#f-country", "")
        page.wait_for_selector(item, timeout=2_000)

        # The officer in the control room acknowledges it.
        page.click(f"{item} button[data-act='ack']")
        page.wait_for_selector(f"#alerts li[data-mrn='{victim.mrn}'].acknowledged", timeout=5_000)
        row = db.execute(
            "SELECT status, acknowledged_by FROM alerts WHERE mrn = %s AND type = 'seal_tampered'",
            (victim.mrn,),
        ).fetchone()
        db.commit()
        assert row[0] == "acknowledged" and row[1].startswith("control_room:")

        # Then resolves it with a note.
        page.click(f"#alerts li[data-mrn='{victim.mrn}'].acknowledged button[data-act='resolve']")
        page.fill(f"#alerts li[data-mrn='{victim.mrn}'] textarea", "seal checked at the border")
        # Another truck's breach arrives while the note is being written: the list is drawn
        # again and the note the officer typed is still there (it was wiped before).
        other_truck = plans[3]
        stack["fleet"].inject_breach(other_truck.device_id)
        page.wait_for_selector(f"#alerts li[data-mrn='{other_truck.mrn}'].critical", timeout=5_000)
        draft = page.input_value(f"#alerts li[data-mrn='{victim.mrn}'] textarea")
        assert draft == "seal checked at the border"
        page.click(f"#alerts li[data-mrn='{victim.mrn}'] button[data-act='confirm']")
        page.wait_for_selector(f"#alerts li[data-mrn='{victim.mrn}'].resolved", timeout=5_000)

        # A transit's detail: seals, timeline and a replay of its track.
        page.evaluate(
            f"() => document.querySelector(\"#alerts li[data-mrn='{victim.mrn}']\").click()"
        )
        page.wait_for_selector("#detail:not([hidden])")
        page.wait_for_function("() => Number(document.getElementById('d-slider').max) > 2")
        page.fill("#d-slider", "1")
        page.dispatch_event("#d-slider", "input")
        assert "(2 of" in page.inner_text("#d-time")
        assert victim.seal_ids[0] in page.inner_text("#d-seals")
        page.screenshot(path=str(SHOTS / "map-detail.png"))
        browser.close()


def test_the_page_reconnects_and_catches_up_on_missed_alerts(stack, db) -> None:
    plans = stack["plans"]
    url = f"http://127.0.0.1:{stack['port']}/map"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.fill("#key", stack["key"])
        page.click("#signin-form button")
        page.wait_for_selector("#link.up", timeout=15_000)
        # The API goes away; a seal is cut while the page is disconnected.
        stack["api"].terminate()
        stack["api"].wait(10)
        page.wait_for_selector("#link.down", timeout=10_000)
        victim = plans[4]
        stack["fleet"].inject_breach(victim.device_id)
        deadline = time.monotonic() + 15
        n = 0
        while time.monotonic() < deadline and not n:
            n = db.execute(
                "SELECT count(*) FROM alerts WHERE mrn = %s AND type = 'seal_tampered'",
                (victim.mrn,),
            ).fetchone()[0]
            db.commit()
            time.sleep(0.2)
        assert n == 1, "ingest did not raise the seal alert"
        assert page.query_selector(f"#alerts li[data-mrn='{victim.mrn}']") is None
        # The API comes back on the same address: the page reconnects by itself and
        # gets the alert it missed.
        stack["api"] = start_api(stack["port"])
        page.wait_for_selector("#link.up", timeout=20_000)
        page.wait_for_selector(f"#alerts li[data-mrn='{victim.mrn}'].critical", timeout=10_000)
        assert page.evaluate("() => window.transitMap.reconnects") >= 1
        browser.close()


def test_partner_sees_only_its_trucks_and_no_alert_panel(stack, settings) -> None:
    with psycopg.connect(settings.database_url) as conn:
        key = keys.create(conn, "partner", country="LA", label="browser test")
        conn.commit()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{stack['port']}/map")
        page.fill("#key", key)
        page.click("#signin-form button")
        page.wait_for_selector("#link.up", timeout=15_000)
        page.wait_for_function("() => window.transitMap.trucks.size > 0", timeout=20_000)
        countries = page.evaluate(
            "() => [...window.transitMap.trucks.values()].map(t => t.countries)"
        )
        assert countries and all("LA" in c for c in countries)
        assert page.is_hidden("#alerts-section")
        browser.close()


def test_a_revoked_key_signs_the_control_room_out(settings, api_url) -> None:
    """The live feed closes with 4401 when the key is revoked; the page asks for
    another key instead of reconnecting with the dead one."""
    with psycopg.connect(settings.database_url) as conn:
        key = keys.create(conn, "control_room", label="browser revocation test")
        conn.commit()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{api_url}/map")
        page.fill("#key", key)
        page.click("#signin-form button")
        page.wait_for_selector("#link.up", timeout=15_000)
        assert page.is_hidden("#signin")
        with psycopg.connect(settings.database_url) as conn:
            keys.revoke(conn, keys.key_id(key), actor="test")
            conn.commit()
        page.wait_for_selector("#signin", state="visible", timeout=10_000)
        assert "Signed out" in page.inner_text("#signin-error")
        assert "revoked" in page.inner_text("#signin-error")
        assert page.evaluate("() => sessionStorage.getItem('transit.key')") is None
        reconnects = page.evaluate("() => window.transitMap.reconnects")
        page.wait_for_timeout(1_500)
        assert page.evaluate("() => window.transitMap.reconnects") == reconnects
        browser.close()
