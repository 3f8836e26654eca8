"""The live feed as a client sees it: coalesced positions (at most one a second per
truck), only inside the declared view, alerts scoped by role, exports of a track."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import xml.etree.ElementTree as ET

import websockets

from tests.e2e.test_browser import stack  # noqa: F401  (the running stack, shared)


async def _collect(url: str, seconds: float, view=None) -> list[dict]:
    frames = []
    async with websockets.connect(url) as ws:
        if view is not None:
            await ws.send(json.dumps({"type": "view", "bbox": view}))
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
            except TimeoutError:
                break
    return frames


def test_positions_are_coalesced_and_bounded_by_the_view(stack) -> None:  # noqa: F811
    url = f"ws://127.0.0.1:{stack['port']}/api/v1/live?key={stack['key']}"
    mine = {p.mrn for p in stack["plans"]}
    frames = asyncio.run(_collect(url, 6.0))
    assert frames[0]["type"] == "hello" and frames[0]["role"] == "control_room"
    updates: dict[str, list[str]] = {}
    for f in frames:
        if f["type"] == "trucks" and not f["full"]:
            for item in f["items"]:
                updates.setdefault(item[0], []).append(f["at"])
    # The trucks report every second; each comes at most once per frame, frames at
    # most once a second.
    assert mine <= set(updates)
    for mrn in mine:
        assert len(updates[mrn]) == len(set(updates[mrn])) <= 7
    # A view over the open sea: no truck is sent.
    far = asyncio.run(_collect(url, 3.0, view=[110.0, 5.0, 112.0, 7.0]))
    after_view = [f for f in far if f["type"] == "trucks"][1:]
    assert after_view and all(not f["items"] for f in after_view)


def test_a_bad_key_is_refused(stack) -> None:  # noqa: F811
    url = f"ws://127.0.0.1:{stack['port']}/api/v1/live?key=tk_nope_nope"

    async def go() -> int | None:
        try:
            async with websockets.connect(url) as ws:
                await ws.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code
        return None

    assert asyncio.run(go()) in (4401, 403)


def test_track_exports(stack) -> None:  # noqa: F811
    mrn = stack["plans"][0].mrn
    base = f"http://127.0.0.1:{stack['port']}/api/v1/transits/{mrn}"
    time.sleep(3)

    def get(path: str) -> tuple[str, bytes]:
        req = urllib.request.Request(base + path, headers={"X-API-Key": stack["key"]})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["Content-Type"], r.read()

    kind, gpx = get("/track.gpx")
    pts = ET.fromstring(gpx).findall(".//{http://www.topografix.com/GPX/1/1}trkpt")
    kind_csv, csv_body = get("/track.csv")
    rows = csv_body.decode().splitlines()
    _, geo = get("/track")
    coords = json.loads(geo)["features"][0]["geometry"]["coordinates"]
    assert kind.startswith("application/gpx+xml") and kind_csv.startswith("text/csv")
    assert rows[0] == "time,lat,lon,speed_kmh,course_deg,hdop"
    assert len(pts) == len(rows) - 1 == len(coords) >= 2
    assert float(pts[0].get("lat")) == float(rows[1].split(",")[1])
    kind, html = get("/report")
    assert kind.startswith("text/html") and mrn.encode() in html and b"Timeline" in html
