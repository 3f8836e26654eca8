"""``transit bench map``: the control-room page drawing many trucks, in Chromium.

The page runs against a real API (started here on a free loopback port); ``trucks``
synthetic trucks are loaded along the corridors and the map is panned and zoomed while
each redraw of the truck canvas is timed in the page (``performance.now``). The figure
is compared with the browser's frame budget at 60 Hz (16.7 ms): ``ratio_vs_frame_budget``
under 1 means every redraw fits in a frame. A DOM marker per truck (Leaflet's
``L.marker``) is timed on the same trucks as the reference a canvas layer avoids.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import psycopg

from transit import keys
from transit.config import PROJECT_ROOT, Settings
from transit.geofence.corridor import acts_network
from transit.provision import import_geojson

CHROMIUM = "/usr/bin/chromium"
FRAME_MS = 1000 / 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    settings: Settings, trucks: int = 10_000, frames: int = 120, dom_trucks: int = 2_000
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with psycopg.connect(settings.database_url) as conn:
        # The synthetic trucks are laid along the corridors: on a fresh database, the
        # bundled network first (the import is idempotent).
        import_geojson(conn, acts_network())
        key = keys.create(conn, "control_room", label="bench map", actor="bench")
        conn.commit()
    port = _free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "transit.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT_ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/map")
            page.fill("#key", key)
            page.click("#signin-form button")
            page.wait_for_selector("#link.up", timeout=20_000)
            page.wait_for_function("() => document.querySelectorAll('path').length > 0")
            page.evaluate(f"() => window.transitMap.loadSynthetic({trucks})")
            draw = page.evaluate(
                """async (frames) => {
                    const S = window.transitMap;
                    const times = [];
                    for (let i = 0; i < frames; i++) {
                        const t0 = performance.now();
                        S.redraw();
                        times.push(performance.now() - t0);
                        if (i % 10 === 0) await new Promise(r => requestAnimationFrame(r));
                    }
                    return times;
                }""",
                frames,
            )
            dom = page.evaluate(
                """(n) => {
                    const t0 = performance.now();
                    const group = L.layerGroup();
                    const list = [...window.transitMap.trucks.values()].slice(0, n);
                    for (const t of list) group.addLayer(L.marker([t.lat, t.lon]));
                    const host = document.createElement('div');
                    host.style.cssText = 'position:absolute;width:1440px;height:900px;left:-5000px';
                    document.body.appendChild(host);
                    const m = L.map(host).setView([9.5, 102], 5);
                    group.addTo(m);
                    const ms = performance.now() - t0;
                    m.remove(); host.remove();
                    return ms;
                }""",
                dom_trucks,
            )
            drawn = page.evaluate("() => window.transitMap.trucks.size")
            browser.close()
    finally:
        api.terminate()
        api.wait(10)
    p50 = statistics.median(draw)
    p95 = sorted(draw)[int(0.95 * (len(draw) - 1))]
    return {
        "trucks": drawn,
        "frames": len(draw),
        "draw_ms_p50": round(p50, 2),
        "draw_ms_p95": round(p95, 2),
        "frame_budget_ms": round(FRAME_MS, 2),
        "ratio_vs_frame_budget": round(p95 / FRAME_MS, 3),
        "dom_markers": dom_trucks,
        "dom_markers_draw_ms": round(dom, 1),
        "canvas_ms_per_1000_trucks": round(p50 / (drawn / 1000), 3),
        "dom_ms_per_1000_trucks": round(dom / (dom_trucks / 1000), 1),
    }
