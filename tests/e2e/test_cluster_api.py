"""Stateless API and notifier, N of each (issue 14, point 3): two `transit api` behind
HAProxy (scripts/cluster-api.sh, ports 18920-18929) and two `transit notify`, one of each
SIGKILLed while in use. Against the database of scripts/services.sh (or
TRANSIT_DATABASE_URL). About a minute and a half."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from playwright.sync_api import sync_playwright

from firmware_sim.scenario import fleet_plan
from tests.conftest import ROOT, put_under_way
from tests.e2e.test_browser import CHROMIUM
from transit import keys
from transit.cluster.api import ClusterApi
from transit.db import alerts, outbox, partners
from transit.geofence.corridor import acts_network
from transit.model import AlertEvent, AlertType, Severity

CLUSTER = ClusterApi(apis=2, notifiers=0)  # the notifiers of the test are its own processes
PARTNER = "QZ"  # a country code no other test uses
SECRET = b"cluster-api-test-secret"


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterApi]:
    CLUSTER.start()
    yield CLUSTER
    CLUSTER.stop()


@pytest.fixture(scope="module")
def key(settings) -> str:
    with psycopg.connect(settings.database_url) as conn:
        made = keys.create(conn, "control_room", label="cluster api test")
        conn.commit()
    return made


def test_requests_keep_succeeding_while_an_api_process_is_killed(cluster, key) -> None:
    results: list[tuple[float, int | str, str | None]] = []  # start, status, served by
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=cluster.url, headers={"X-API-Key": key}, timeout=10) as c:
            while not stop.is_set():
                t = time.monotonic()
                try:
                    r = c.get("/api/v1/alerts", params={"limit": 5})
                    results.append((t, r.status_code, r.headers.get("x-served-by")))
                except httpx.HTTPError as exc:
                    results.append((t, repr(exc), None))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for th in threads:
        th.start()
    time.sleep(2)
    retried = sum(s.retries + s.redispatches for s in cluster.servers().values())
    killed_at = time.monotonic()
    cluster.kill("api1")
    wait_for(lambda: cluster.servers()["api1"].status.startswith("DOWN"), 15, "api1 DOWN")
    down_at = time.monotonic()
    time.sleep(2)
    stop.set()
    for th in threads:
        th.join(15)
    retried = sum(s.retries + s.redispatches for s in cluster.servers().values()) - retried
    failed = [r for r in results if r[1] != 200]
    after = [r for r in results if r[0] > down_at]
    print(
        f"\nrequests through HAProxy: {len(results)}, failed {len(failed)}, retried or "
        f"redispatched by HAProxy {retried}; api1 out of rotation "
        f"{down_at - killed_at:.2f} s after its SIGKILL"
    )
    assert not failed, failed[:5]
    assert {r[2] for r in results if r[0] < killed_at} == {"api1", "api2"}
    assert after and {r[2] for r in after} == {"api2"}
    cluster.start()  # the killed one comes back into rotation
    assert cluster.servers()["api1"].status == "UP"


def raise_alert(settings, plan: Any, n: int) -> int:
    event = AlertEvent(
        mrn=plan.mrn,
        device_id=plan.device_id,
        type=AlertType.SEAL_TAMPERED,
        severity=Severity.HIGH,
        action="open",
        time=datetime.now(UTC),
        key=f"cluster-api-{n}",
    )
    with psycopg.connect(settings.database_url) as conn:
        return alerts.record(conn, [event])[0]  # committed on leaving


class RawClient:
    """A live-feed client as the page is one: it reconnects with ``since``, the newest
    alert id it has; it records every alert frame with the connection it came on."""

    def __init__(self, url: str, key: str) -> None:
        self.base = url.replace("http://", "ws://") + f"/api/v1/live?key={key}"
        self.frames: list[tuple[int, int]] = []  # (connection number, alert id)
        self.served_by: list[str | None] = []
        self.up = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    async def _run(self) -> None:
        while not self.stop.is_set():
            since = max((a for _, a in self.frames), default=0)
            try:
                async with websockets.connect(f"{self.base}&since={since}") as ws:
                    self.served_by.append(ws.response.headers.get("x-served-by"))
                    self.up.set()
                    while not self.stop.is_set():
                        try:
                            m = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                        except TimeoutError:
                            continue
                        if m["type"] == "alert":
                            self.frames.append((len(self.served_by), int(m["alert"]["id"])))
            except (OSError, websockets.exceptions.WebSocketException):
                pass
            self.up.clear()
            await asyncio.sleep(0.5)


# Counts the page's alert frames by id, beside what app.js does with them.
COUNT_FRAMES = """
window.alertFrames = {};
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = new Native(url, protocols);
  ws.addEventListener('message', (ev) => {
    const m = JSON.parse(ev.data);
    const f = window.alertFrames;
    if (m.type === 'alert') f[m.alert.id] = (f[m.alert.id] || 0) + 1;
  });
  return ws;
};
window.WebSocket.prototype = Native.prototype;
"""


def test_the_live_map_reconnects_to_the_other_api_and_catches_up(
    cluster, key, settings, db, close_transits
) -> None:
    (plan,) = fleet_plan(acts_network(), 1, seed=1414, traffic=False)
    close_transits.append(plan.mrn)
    put_under_way(db, settings, [plan])
    raw = RawClient(cluster.url, key)
    # Both feeds open on api1 (api2 drained meanwhile): api1 is the one that dies.
    cluster.admin("set server api/api2 state drain")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.add_init_script(COUNT_FRAMES)
            page.goto(f"{cluster.url}/map")
            page.fill("#key", key)
            page.click("#signin-form button")
            page.wait_for_selector("#link.up", timeout=20_000)
            raw.thread.start()
            assert raw.up.wait(10)
            assert raw.served_by == ["api1"]
            wait_for(lambda: cluster.servers()["api1"].sessions >= 2, 5, "two feeds on api1")
            cluster.admin("set server api/api2 state ready")

            def page_has(ids: list[int]) -> bool:
                have = page.evaluate("() => [...window.transitMap.alerts.keys()]")
                return set(ids) <= set(have)

            def raw_has(ids: list[int]) -> bool:
                return set(ids) <= {a for _, a in raw.frames}

            before = [raise_alert(settings, plan, n) for n in range(3)]
            wait_for(lambda: page_has(before) and raw_has(before), 10, "alerts before the kill")
            killed_at = time.monotonic()
            cluster.kill("api1")
            during = []
            for n in range(3, 8):  # raised while the feeds are down and reconnecting
                during.append(raise_alert(settings, plan, n))
                time.sleep(0.1)
            wait_for(
                lambda: page.evaluate(
                    "() => window.transitMap.reconnects >= 1"
                    " && window.transitMap.ws.readyState === 1"
                ),
                20,
                "the page reconnected",
            )
            page_back = time.monotonic() - killed_at
            wait_for(lambda: raw.up.is_set() and len(raw.served_by) == 2, 20, "raw reconnected")
            after = [raise_alert(settings, plan, n) for n in range(8, 11)]
            raised = before + during + after
            wait_for(lambda: page_has(raised), 20, "the page has every alert")
            wait_for(lambda: raw_has(raised), 20, "the raw client has every alert")
            time.sleep(1.5)  # two more broadcasts: a second copy would come by now
            frames = page.evaluate("() => window.alertFrames")
            rows = {i: page.locator(f"#alerts li[data-id='{i}']").count() for i in raised}
        finally:
            raw.stop.set()
            browser.close()
    raw.thread.join(10)
    print(
        f"\nlive map back through HAProxy {page_back:.2f} s after the SIGKILL of its API; "
        f"{len(raised)} alerts, {len(during)} raised while it was down"
    )
    assert {i: frames.get(str(i)) for i in raised} == dict.fromkeys(raised, 1)
    assert rows == dict.fromkeys(raised, 1)
    got = Counter(a for _, a in raw.frames if a in raised)
    assert got == Counter(raised)  # each once, across both connections
    assert raw.served_by == ["api1", "api2"]
    db.execute("DELETE FROM alerts WHERE mrn = %s", (plan.mrn,))
    db.commit()
    cluster.start()


class Receiver(ThreadingHTTPServer):
    """A partner's endpoint: checks each notice's signature, records its delivery id and
    the sender's port, answers 200 after ``delay`` seconds (a notice is in flight)."""

    daemon_threads = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.got: list[tuple[int, int, float]] = []  # delivery id, sender's port, when
        self.bad: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/notices"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the killed sender's connection is reset: expected

    def ids(self) -> Counter[int]:
        with self.lock:
            return Counter(i for i, _, _ in self.got)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection, one port per sender
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        with self.server.lock:
            if not hmac.compare_digest(sig, self.headers.get("X-Transit-Signature", "")):
                self.server.bad.append(self.headers.get("X-Transit-Delivery", "?"))
            delivery = int(self.headers["X-Transit-Delivery"])
            self.server.got.append((delivery, self.client_address[1], time.monotonic()))
        time.sleep(self.server.delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass  # quiet


def sender_ports(pids: list[int], port: int) -> dict[int, int]:
    """The local port of each sender's connection to the receiver: port -> pid."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        m = re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:\d+.*pid=(\d+)", line)
        if m and int(m[2]) in pids:
            found[int(m[1])] = int(m[2])
    return found


@pytest.fixture
def receiver(settings, db) -> Iterator[Receiver]:
    r = Receiver(delay=0.02)
    threading.Thread(target=r.serve_forever, daemon=True).start()
    partners.put(db, PARTNER, r.url, SECRET)
    db.commit()
    yield r
    r.shutdown()
    r.server_close()
    db.rollback()
    db.execute("DELETE FROM webhook_outbox WHERE country = %s", (PARTNER,))
    db.execute("DELETE FROM partner_endpoints WHERE country = %s", (PARTNER,))
    db.commit()


def notifier(n: int) -> subprocess.Popen[bytes]:
    CLUSTER.log("").parent.mkdir(parents=True, exist_ok=True)
    log = CLUSTER.log(f"test-notify{n}").open("wb")  # its httpx lines, one per notice
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "transit.cli", "notify", "--backoff", "0.5"],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )


def enqueue(db, n: int) -> list[int]:
    before = db.execute("SELECT coalesce(max(id), 0) FROM webhook_outbox").fetchone()[0]
    for i in range(n):
        outbox.enqueue(db, "crossing", f"CLUSTERAPI{i:08d}", [PARTNER], {"n": i})
    db.commit()
    rows = db.execute(
        "SELECT id FROM webhook_outbox WHERE country = %s AND id > %s", (PARTNER, before)
    ).fetchall()
    return [r[0] for r in rows]


def all_delivered(db, ids: list[int]) -> bool:
    db.rollback()
    left = db.execute(
        "SELECT count(*) FROM webhook_outbox WHERE id = ANY(%s) AND delivered_at IS NULL", (ids,)
    ).fetchone()[0]
    return left == 0


def test_two_notifiers_deliver_each_notice_once_and_a_killed_one_only_its_own_again(
    receiver, db
) -> None:
    senders = [notifier(1), notifier(2)]
    try:
        # Both at work, no kill: every notice exactly once, shared by the two.
        first = enqueue(db, 200)
        wait_for(lambda: all_delivered(db, first), 60, "200 notices delivered")
        got = receiver.ids()
        assert {i: got[i] for i in first} == dict.fromkeys(first, 1)
        by = sender_ports([s.pid for s in senders], receiver.server_address[1])
        with receiver.lock:
            shares = Counter(by.get(port) for i, port, _ in receiver.got if i in first)
        # Both sent a share (a port not found is a connection httpx had closed by then).
        assert {s.pid for s in senders} <= set(shares), shares
        # One of them SIGKILLed mid-run (a notice of its in flight, likely).
        second = enqueue(db, 200)
        wait_for(lambda: sum(receiver.ids()[i] for i in second) >= 60, 60, "60 sent")
        victim = senders[0]
        victim_ports = set(sender_ports([victim.pid], receiver.server_address[1]))
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)
        wait_for(lambda: all_delivered(db, second), 60, "the other delivers the rest")
        time.sleep(1)
    finally:
        for s in senders:
            if s.poll() is None:
                s.terminate()
                s.wait(15)
    got = receiver.ids()
    twice = {i for i in second if got[i] > 1}
    with receiver.lock:
        first_sends = {i: (port, t) for i, port, t in reversed(receiver.got)}
    print(
        f"\nnotices: 200 with two senders, each once; 200 with one SIGKILLed: "
        f"{len(twice)} sent twice (in flight at the kill)"
    )
    assert not receiver.bad
    assert all(got[i] >= 1 for i in second)
    # At least once; the only repeat is the notice the killed sender had in flight: its
    # first copy came from that sender, begun before the kill. Its delivery id is the
    # same both times, so the partner drops the repeat.
    assert len(twice) <= 1
    for i in twice:
        port, t = first_sends[i]
        assert port in victim_ports and t < killed_at
        assert got[i] == 2
