"""The live feed: truck positions and alerts over a WebSocket (``/api/v1/live``).

One broadcaster per API process reads the database for every client: twice a second
the alerts raised or worked since its last look, once a second the newest fix and the
state of every transit under way. Each client gets, at most once a second, the trucks
that changed (coalesced per truck: one position each) inside the map view it declared,
and the alerts as they come, scoped to what its key may see. A client that reconnects
with ``since`` (the last alert id it had) gets the alerts it missed and a full snapshot.
Nothing of this lives only in one process: a client that reconnects to another API
process (behind a load balancer, after its process died) catches up from the database.
One socket never carries the same version of an alert twice (its catch-up and the
broadcast may both read it); an alert changed (acknowledged, resolved) comes again.
An alert whose transaction committed after a higher id was seen (two ingest workers
commit in either order) is still sent: the broadcaster reads again the ids of the last
``LOOKBACK_S`` seconds and sends what it had not.

Frames (JSON):
- ``{"type": "hello", "role": ..., "alert_id": N}`` once;
- ``{"type": "trucks", "at": ISO, "full": bool, "items": [[mrn, device, lon, lat,
  speed_kmh, state, corridor, countries], ...]}``;
- ``{"type": "alert", "alert": {...}}`` for a new alert or a change to one.

A client sends ``{"type": "view", "bbox": [west, south, east, north]}`` when its map
moves; positions outside are not sent (the bandwidth per client is bounded by its view,
and by ``MAX_TRUCKS_PER_FRAME``).

A key that stops working closes the sockets opened with it: every ``KEY_CHECK_S`` the
broadcaster reads the state of its clients' keys from the database (one query for all
of them, so a key revoked by any API process or by the CLI is seen by every process),
and a client whose key was revoked, expired or deleted gets a close frame with code
``4401`` (the WebSocket analogue of HTTP 401) and the reason as the close reason, e.g.
"the API key 3f2a9c1b was revoked at ...". Its sender task sends the close itself, so
nothing else writes to the socket; the socket is closed within ``KEY_CHECK_S`` plus one
loop tick (about 1.5 s) of the revocation's commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from psycopg_pool import ConnectionPool

from transit import lifecycle
from transit.db import alerts, server, transits
from transit.db.visibility import Visibility
from transit.keys import KeyRefused, Principal, authenticate, refused
from transit.rules.movement import Thresholds

log = logging.getLogger(__name__)
router = APIRouter()

SILENT_S = 120.0  # no fix for this long: the truck is drawn as silent
STOP_KMH = Thresholds().stop_speed_kmh  # the rules' default: what a stop is
MAX_TRUCKS_PER_FRAME = 20_000
UNDER_WAY = sorted(s.value for s in lifecycle.UNDER_WAY)
KEY_CHECK_S = 1.0  # how often the clients' keys are re-read (revoked or expired: closed)
CLOSE_KEY_REFUSED = 4401
LOOKBACK_S = 10.0  # alert ids seen this recently are read again (late commits)
MAX_ALERTS_REMEMBERED = 20_000  # per socket: versions sent, to send none twice


def truck_state(speed: float | None, age_s: float, open_types: set[str]) -> str:
    """How the map colours a truck."""
    if age_s >= SILENT_S or "signal_lost" in open_types:
        return "silent"
    if "route_deviation" in open_types:
        return "deviated"
    if open_types:
        return "alert"
    if speed is not None and speed <= STOP_KMH:
        return "stopped"
    return "on_route"


def _json(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


@dataclass(eq=False)
class Client:
    who: Principal
    vis: Visibility
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=64))
    bbox: tuple[float, float, float, float] | None = None
    sent: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # mrn -> last row sent
    refused: str | None = None  # why its key no longer works: its socket is being closed
    alerts_sent: dict[int, str] = field(default_factory=dict)  # alert id -> frame sent

    def refuse(self, reason: str) -> None:
        """Its key no longer works: drop what is queued and wake the sender to close."""
        self.refused = reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait("")

    def in_view(self, lon: float, lat: float) -> bool:
        if self.bbox is None:
            return True
        w, s, e, n = self.bbox
        return s <= lat <= n and (w <= lon <= e if w <= e else lon >= w or lon <= e)

    def offer_alert(self, alert: dict[str, Any]) -> None:
        """Queue an alert's frame, unless this socket had this very version already."""
        text = json.dumps({"type": "alert", "alert": alert}, default=_json)
        aid = int(alert["id"])
        if self.alerts_sent.get(aid) == text:
            return
        self.alerts_sent.pop(aid, None)
        self.alerts_sent[aid] = text
        if len(self.alerts_sent) > MAX_ALERTS_REMEMBERED:
            del self.alerts_sent[next(iter(self.alerts_sent))]
        self._put(text)

    def offer(self, frame: dict[str, Any]) -> None:
        """Queue a frame; a client too slow to take them loses the oldest position frames."""
        self._put(json.dumps(frame, default=_json))

    def _put(self, text: str) -> None:
        while True:
            try:
                self.queue.put_nowait(text)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()


class Broadcaster:
    """Reads the database for all clients and fans the changes out."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.clients: set[Client] = set()
        self.trucks: dict[str, tuple[Any, ...]] = {}  # mrn -> row for clients
        self.scope: dict[str, tuple[list[str], set[str]]] = {}  # mrn -> countries, offices
        self.alert_id = 0  # the newest alert id seen
        self.settled = 0  # the newest id seen LOOKBACK_S ago: ids above it are read again
        self.marks: deque[tuple[float, int]] = deque()  # (monotonic time, alert_id then)
        self.fanned: dict[int, str] = {}  # id above settled -> the version fanned out
        self.alert_seen = datetime.now(UTC)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        with self.pool.connection() as conn:
            self.alert_id = self.settled = alerts.newest_id(conn)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        tick = 0
        checked = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self.clients and loop.time() - checked >= KEY_CHECK_S:
                    checked = loop.time()
                    await self._check_keys()
                alerts = await asyncio.to_thread(self._read_alerts)
                for a in alerts:
                    self._fan_alert(a)
                if tick % 2 == 0 and self.clients:
                    rows = await asyncio.to_thread(self._read_trucks)
                    self._fan_trucks(rows)
            except Exception:  # the feed outlives a database restart
                log.exception("live feed: reading the database failed; retrying")
                await asyncio.sleep(2)
            tick += 1
            await asyncio.sleep(0.5)

    async def _check_keys(self) -> None:
        """Close the sockets of clients whose key was revoked, expired or deleted."""
        clients = list(self.clients)
        dead = await asyncio.to_thread(self._read_refused, [c.who.key_id for c in clients])
        for c in clients:
            if c.who.key_id in dead:
                self.clients.discard(c)
                c.refuse(dead[c.who.key_id])

    def _read_refused(self, ids: list[int]) -> dict[int, str]:
        with self.pool.connection() as conn:
            return refused(conn, ids)

    def _read_alerts(self, since_id: int | None = None) -> list[dict[str, Any]]:
        """Alerts new or worked since the last look, each version once (ids of the last
        ``LOOKBACK_S`` are read again for late commits); with ``since_id``, every alert
        after it (a client catching up)."""
        now = datetime.now(UTC)
        with self.pool.connection() as conn:
            if since_id is not None:
                return alerts.changed(conn, since_id)
            rows = alerts.changed(conn, self.settled, self.alert_seen)
        self.alert_seen = now
        fresh = []
        for r in rows:
            version = json.dumps(r, default=_json, sort_keys=True)
            if self.fanned.get(int(r["id"])) != version:
                self.fanned[int(r["id"])] = version
                fresh.append(r)
        if rows:
            self.alert_id = max(self.alert_id, max(int(r["id"]) for r in rows))
        t = time.monotonic()
        self.marks.append((t, self.alert_id))
        while self.marks and self.marks[0][0] < t - LOOKBACK_S:
            self.settled = self.marks.popleft()[1]
        self.fanned = {i: v for i, v in self.fanned.items() if i > self.settled}
        return fresh

    def _read_trucks(self) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            rows = transits.positions(conn, UNDER_WAY)
            open_types = alerts.open_types(conn)
            at = server.now(conn)
        out = []
        for mrn, device, corridor, countries, dep, dest, via, t, lon, lat, speed in rows:
            state = truck_state(speed, (at - t).total_seconds(), open_types.get(mrn, set()))
            self.scope[mrn] = (list(countries), {dep, dest, *via})
            out.append(
                (
                    mrn,
                    device,
                    round(lon, 5),
                    round(lat, 5),
                    None if speed is None else round(speed),
                    state,
                    corridor,
                    list(countries),
                )
            )
        return out

    def _fan_alert(self, a: dict[str, Any], clients: list[Client] | None = None) -> None:
        """Send an alert to the clients (all, or these) whose key may see it."""
        offices = {a.get("office_departure"), a.get("office_destination")}
        offices |= set(a.get("offices_transit") or [])
        countries = list(a.get("countries") or [])
        public = {k: v for k, v in a.items() if k not in ("countries", "offices_transit")}
        public.pop("office_departure", None)
        public.pop("office_destination", None)
        for c in list(self.clients) if clients is None else clients:
            if c.vis.sees_alerts and c.vis.sees(countries, {o for o in offices if o}):
                c.offer_alert(public)

    def _fan_trucks(self, rows: list[tuple[Any, ...]]) -> None:
        now = datetime.now(UTC).isoformat()
        self.trucks = {r[0]: r for r in rows}
        for c in list(self.clients):
            self._send_trucks(c, rows, now, full=False)

    def _send_trucks(self, c: Client, rows: list[tuple[Any, ...]], at: str, full: bool) -> None:
        items = []
        for r in rows:
            countries, offices = self.scope.get(r[0], ([], set()))
            if not c.vis.sees(countries, offices) or not c.in_view(r[2], r[3]):
                continue
            if not full and c.sent.get(r[0]) == r:
                continue
            c.sent[r[0]] = r
            items.append(list(r))
            if len(items) >= MAX_TRUCKS_PER_FRAME:
                break
        if items or full:
            c.offer({"type": "trucks", "at": at, "full": full, "items": items})

    async def serve(self, ws: WebSocket, who: Principal, since: int | None) -> None:
        client = Client(who, Visibility.of(who))
        self.clients.add(client)
        try:
            client.offer({"type": "hello", "role": who.role, "alert_id": self.alert_id})
            if since is not None and client.vis.sees_alerts:
                for a in await asyncio.to_thread(self._read_alerts, since):
                    self._fan_alert(a, [client])
            # The broadcaster's latest look, or a first one when nobody was watching.
            rows = list(self.trucks.values()) or await asyncio.to_thread(self._read_trucks)
            self._send_trucks(client, rows, datetime.now(UTC).isoformat(), full=True)
            sender = asyncio.create_task(self._pump(ws, client))
            try:
                while True:
                    msg = json.loads(await ws.receive_text())
                    if msg.get("type") == "view":
                        bbox = msg.get("bbox")
                        if (
                            isinstance(bbox, list)
                            and len(bbox) == 4
                            and all(isinstance(v, int | float) for v in bbox)
                        ):
                            client.bbox = (bbox[0], bbox[1], bbox[2], bbox[3])
                            client.sent.clear()
                            self._send_trucks(
                                client,
                                list(self.trucks.values()),
                                datetime.now(UTC).isoformat(),
                                full=True,
                            )
            finally:
                sender.cancel()
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            self.clients.discard(client)
            if not self.clients:
                self.trucks = {}  # no longer kept up to date: not a snapshot to give out

    @staticmethod
    async def _pump(ws: WebSocket, client: Client) -> None:
        """The only writer of the socket: frames, then the close when the key is refused."""
        while True:
            text = await client.queue.get()
            if client.refused is not None:
                await ws.close(code=CLOSE_KEY_REFUSED, reason=client.refused[:120])
                return
            await ws.send_text(text)


@router.websocket("/api/v1/live")
async def live(ws: WebSocket) -> None:
    """Positions and alerts, live. The key comes as ``?key=`` (a browser cannot set
    headers on a WebSocket); ``?since=`` is the last alert id the client has.

    A refused key (missing, unknown, revoked, expired) gets the handshake and then a
    close with code 4401 and the reason: a browser sees neither the HTTP status of a
    refused handshake nor a reason for it."""
    key = ws.query_params.get("key", "")
    since_raw = ws.query_params.get("since")
    pool = ws.app.state.pool
    try:
        who = await asyncio.to_thread(_authenticate, pool, key)
    except KeyRefused as exc:
        await ws.accept()
        await ws.close(code=CLOSE_KEY_REFUSED, reason=str(exc)[:120])
        return
    await ws.accept()
    since = int(since_raw) if since_raw and since_raw.isdigit() else None
    await ws.app.state.live.serve(ws, who, since)


def _authenticate(pool: ConnectionPool, key: str) -> Principal:
    if not key:
        raise KeyRefused("an API key is required (?key=)")
    with pool.connection() as conn:
        who = authenticate(conn, key)
        conn.commit()  # its last use
        return who
