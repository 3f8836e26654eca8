"""The risk score in a real browser (Playwright driving Debian's Chromium against the
API): the control room's "to inspect" list ranked by risk and a transit's reasons; the
exit officer sees the level and reasons before deciding, closes with an inspection, and
the database keeps it. The scores are made by ingest's own transaction from a covert
and a clean truck's telemetry (tests/risk_world.py)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import psycopg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests import risk_world as world
from tests.conftest import free_port
from tests.e2e.test_browser import CHROMIUM, SHOTS, start_api
from transit import keys
from transit.db import risk as risk_rows


@pytest.fixture
def scored(settings):
    """A covert and a clean transit scored by ingest, an API, and the keys."""
    token = secrets.token_hex(3).upper()
    with psycopg.connect(settings.database_url) as conn:
        made = world.declare(conn, token, [world.COVERT, world.CLEAN])
        now = conn.execute("SELECT now()").fetchone()[0]
        by_device = {
            made[p.name][1]: world.messages(
                made[p.name][1], world.fixes(p, now - timedelta(minutes=80))
            )
            for p in (world.COVERT, world.CLEAN)
        }
        conn.commit()
        list(world.drive(conn, settings, by_device, now, commit=True))
        keyed = {
            "control_room": keys.create(conn, "control_room", label="browser risk"),
            "officer": keys.create(conn, "officer", office="THBKK001", label="browser risk"),
        }
        conn.commit()
    port = free_port()
    api = start_api(port)
    yield {
        "url": f"http://127.0.0.1:{port}/map",
        "mrns": {k: v[0] for k, v in made.items()},
        "keys": keyed,
    }
    api.terminate()
    api.wait(10)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE transits SET status = 'closed', closed_at = coalesce(closed_at, now())"
            " WHERE mrn = ANY(%s)",
            ([v[0] for v in made.values()],),
        )
        conn.commit()


def _sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.fill("#key", key)
    page.click("#signin-form button")
    expect(page.locator("#signin")).to_be_hidden(timeout=15_000)


def test_the_control_room_ranks_transits_by_risk_and_shows_the_reasons(scored) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    covert, clean = scored["mrns"]["covert"], scored["mrns"]["clean"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        _sign_in(page, scored["url"], scored["keys"]["control_room"])
        item = page.locator(f"#risk-list li[data-mrn='{covert}']")
        expect(item).to_be_visible(timeout=20_000)
        assert "high" in item.locator(".risk").inner_text()
        # Ranked: each item's probability no higher than the one above it.
        shown = page.eval_on_selector_all(
            "#risk-list li[data-mrn] .risk",
            "els => els.map(e => parseInt(e.textContent.split(' ')[1]))",
        )
        assert shown == sorted(shown, reverse=True)
        order = page.eval_on_selector_all(
            "#risk-list li[data-mrn]", "els => els.map(e => e.dataset.mrn)"
        )
        if clean in order:
            assert order.index(covert) < order.index(clean)
        item.click()
        reasons = page.locator("#d-risk table.reasons")
        expect(reasons).to_be_visible(timeout=15_000)
        row = reasons.locator("tr[data-feature='stops_near_limit'] td")
        expect(row.nth(1)).to_have_text("3.00")  # its value
        assert float(row.nth(2).inner_text()) > 0  # its weight
        expect(page.locator("#d-closing")).to_be_hidden()  # the control room does not close
        page.screenshot(path=str(SHOTS / "risk-list.png"))
        browser.close()


def test_the_exit_officer_sees_the_risk_before_closing_and_records_the_inspection(
    scored, settings
) -> None:
    covert = scored["mrns"]["covert"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        _sign_in(page, scored["url"], scored["keys"]["officer"])
        item = page.locator(f"#risk-list li[data-mrn='{covert}']")
        expect(item).to_be_visible(timeout=20_000)
        item.click()
        closing = page.locator("#d-closing")
        expect(closing).to_be_visible(timeout=15_000)
        # Before deciding: the level and the main reasons, and the reasons table.
        expect(page.locator("#c-summary")).to_contain_text("high")
        expect(page.locator("#c-summary")).to_contain_text("stops near the limit")
        expect(page.locator("#d-risk tr[data-feature='stops_near_limit']")).to_be_visible()
        page.screenshot(path=str(SHOTS / "risk-closing.png"))
        page.check("#c-form input[name='inspected']")
        page.check("#c-form input[name='found']")
        page.fill("#c-form textarea[name='note']", "three pallets missing")
        page.click("#c-form button[type='submit']")
        expect(page.locator("#c-result")).to_have_text("Closed: closed", timeout=15_000)
        browser.close()
    with psycopg.connect(settings.database_url) as conn:
        kept = risk_rows.inspections(conn, covert)
    assert [(i["inspected"], i["found"], i["level"], i["note"]) for i in kept] == [
        (True, True, "high", "three pallets missing")
    ]
