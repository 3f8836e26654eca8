"""MQTT sessions of an ingest group: where messages come from, how a session is emptied
and ended. Measured on Mosquitto 2.0.11, and the reasons for each step here:

- a member that dies keeps its persistent session, which keeps receiving its share of
  the group's messages and never hands them to the others: someone must drain it;
- draining: connect with the slot's client id (session kept), UNSUBSCRIBE first (or
  the drainer keeps taking live traffic and is never quiet), process and acknowledge
  until quiet, then DISCONNECT with session expiry 0;
- quiet is not a pause in the stream: the broker holds back what exceeds its inflight
  window until acknowledgements come, and a session expired then loses what it held
  back. So once everything received is acknowledged, an UNSUBSCRIBE goes out as a
  barrier: the broker reads it after those acknowledgements and answers after the
  messages they released; quiet is a barrier answered with nothing new before it;
- a DISCONNECT sent while the broker still streams may never be read (the socket is
  closed with unread data and reset): it is sent only once quiet, and a new connect
  checks that the broker reports no session left, draining again if it does;
- a clean or short-lived session loses what it held: sessions are persistent;
- the broker does not enforce the receive window: what a worker holds is bounded by
  its own queue (paho's thread blocks on it, and the broker waits on TCP).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from transit.config import Settings
from transit.ingest.pipeline import RawMessage
from transit.mqtt import connect_properties, make_client

log = logging.getLogger(__name__)

QUIET_S = 0.5  # nothing new for this long, all acknowledged: time for a barrier
SESSION_EXPIRY_S = 3600
KEEPALIVE_S = 10  # the broker drops a frozen member after 1.5 times this
TAKEN_OVER = 142  # DISCONNECT reason: another connection took the client id


class Link:
    """One MQTT client as a source of messages. An acknowledgement goes back on the
    connection its message came on (a message id means nothing on the next one), and
    the link knows when it has gone quiet (:func:`empty`)."""

    def __init__(self, client: mqtt.Client, own: bool) -> None:
        self.client = client
        self.own = own  # the worker's own session (not one drained for a dead member)
        self.generation = 0
        self.received = 0
        self.settled = 0
        self.unsubacks = 0
        self.last_activity = time.monotonic()  # a message in or an acknowledgement out
        self._lock = threading.Lock()
        client.on_unsubscribe = lambda *_: self._unsubscribed()

    def _unsubscribed(self) -> None:
        with self._lock:
            self.unsubacks += 1

    def new_connection(self) -> None:
        """A connection began or ended: acknowledgements owed on the last one are void."""
        with self._lock:
            self.generation += 1

    def arrived(self) -> int:
        """Count a message in; returns the connection it belongs to."""
        with self._lock:
            self.received += 1
            self.last_activity = time.monotonic()
            return self.generation

    def settle(self, mid: int, qos: int, generation: int) -> None:
        """The message is committed (or will be redelivered): acknowledge it if its
        connection still stands."""
        with self._lock:
            self.settled += 1
            self.last_activity = time.monotonic()
            current = generation == self.generation
        if qos > 0 and current:
            self.client.ack(mid, qos)

    def quiet(self, quiet_s: float = QUIET_S) -> bool:
        """Everything handed out is settled, and nothing moved for ``quiet_s``."""
        with self._lock:
            idle = time.monotonic() - self.last_activity
            return self.settled == self.received and idle >= quiet_s

    def empty(self, subscription: str, wait: Callable[[], bool]) -> bool:
        """Take the session out of the group and empty it: UNSUBSCRIBE, then process
        until quiet (``wait`` does a little of it, or lets the worker do it; False:
        give up), and again after each barrier that brought something new. True when
        a barrier was answered with nothing new before it: the broker holds nothing
        more for this session, which may be expired without loss."""
        while True:
            with self._lock:
                before, acks, generation = self.received, self.unsubacks, self.generation
            self.client.unsubscribe(subscription)  # the first unsubscribes; then barriers
            while self.unsubacks == acks and self.generation == generation:
                if not wait():
                    return False
            while not self.quiet():
                if not wait():
                    return False
            if self.unsubacks != acks and self.received == before:
                return True


# mid, qos, message, monotonic receive time, link, connection of the link
Item = tuple[int, int, RawMessage, float, Link, int]


def message_handler(link: Link, sink: queue.Queue[Item]) -> Callable[..., None]:
    """paho's on_message for ``link``: the message goes to ``sink`` (blocking while it
    is full: paho stops reading and the broker holds on)."""

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        sig = None
        props = getattr(msg, "properties", None)
        for name, value in getattr(props, "UserProperty", None) or []:
            if name == "sig":
                sig = value
        generation = link.arrived()
        raw = RawMessage(msg.topic, bytes(msg.payload), sig)
        sink.put((msg.mid, msg.qos, raw, time.monotonic(), link, generation))

    return on_message


def abandon(client: mqtt.Client, link: Link) -> None:
    """Drop the connection without a DISCONNECT: the broker keeps the session, with
    everything not acknowledged in it, for whoever comes next."""
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        sock.close()
    link.new_connection()  # what is still in the queue is committed, not acknowledged


def expire(client: mqtt.Client, timeout: float = 5.0) -> bool:
    """DISCONNECT with session expiry 0 (the broker forgets the session), wait for the
    connection to end and stop the client's thread. True when it ended in time."""
    ended = threading.Event()
    client.on_disconnect = lambda *_: ended.set()
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.disconnect(properties=props)
    done = ended.wait(timeout)
    client.loop_stop()
    return done


@dataclass
class DrainReport:
    """What a drain did."""

    messages: int = 0
    rounds: int = 0
    gone: bool = False  # the broker reported no session for the client id at the end
    reason: str = ""


def drain(
    settings: Settings,
    client_id: str,
    subscription: str,
    sink: queue.Queue[Item],
    stop: threading.Event,
    beat: Callable[[], object] | None = None,
    max_rounds: int = 5,
    timeout_s: float = 120.0,
) -> DrainReport:
    """Empty and end the session of ``client_id``: its messages go to ``sink`` like the
    worker's own, and are acknowledged once committed. Repeats until a connect finds
    no session. ``beat`` is called about once a second (the reaper's heartbeat)."""
    report = DrainReport()
    deadline = time.monotonic() + timeout_s
    while report.rounds < max_rounds and not stop.is_set():
        report.rounds += 1
        outcome = _drain_once(settings, client_id, subscription, sink, stop, beat, deadline)
        report.messages += outcome.messages
        if outcome.gone or outcome.reason:
            report.gone, report.reason = outcome.gone, outcome.reason
            return report
    report.reason = report.reason or ("stopped" if stop.is_set() else "too many rounds")
    return report


def _drain_once(
    settings: Settings,
    client_id: str,
    subscription: str,
    sink: queue.Queue[Item],
    stop: threading.Event,
    beat: Callable[[], object] | None,
    deadline: float,
) -> DrainReport:
    """One connection to the session: no session (gone), or drained and expired (the
    next round checks), or a reason to give up."""
    out = DrainReport()
    client = make_client(
        settings,
        settings.mqtt_ingest_user,
        settings.mqtt_ingest_password,
        client_id=client_id,
        manual_ack=True,
    )
    client.reconnect_delay_set(30, 60)  # a lost connection ends the round, not retried
    link = Link(client, own=False)
    connected = threading.Event()
    ended = threading.Event()
    state: dict[str, Any] = {}

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        state["refused"] = str(reason) if reason.is_failure else ""
        state["present"] = bool(flags.session_present)
        link.new_connection()
        connected.set()

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        state["taken_over"] = getattr(reason, "value", 0) == TAKEN_OVER
        link.new_connection()
        ended.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = message_handler(link, sink)
    try:
        client.connect(
            settings.mqtt_host,
            settings.mqtt_port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=connect_properties(SESSION_EXPIRY_S),
        )
    except OSError as exc:
        out.reason = f"broker unreachable: {exc}"
        return out
    client.loop_start()
    if not connected.wait(10) or state.get("refused"):
        client.loop_stop()
        out.reason = f"connect failed: {state.get('refused') or 'no answer'}"
        return out
    if not state["present"]:
        # Nothing was left; the session this connect made goes with the disconnect.
        out.gone = expire(client)
        return out
    last_beat = 0.0

    def wait() -> bool:
        nonlocal last_beat
        if ended.is_set() or stop.is_set() or time.monotonic() > deadline:
            return False
        if beat is not None and time.monotonic() - last_beat >= 1.0:
            beat()
            last_beat = time.monotonic()
        time.sleep(0.05)
        return True

    emptied = link.empty(subscription, wait)
    out.messages = link.received
    if not emptied:
        # Cut off, taken over, stopped or too slow: leave the session to the next try
        # (what was not acknowledged is in it still).
        abandon(client, link)
        out.reason = (
            "taken over"
            if state.get("taken_over")
            else "connection lost"
            if ended.is_set()
            else "stopped"
            if stop.is_set()
            else "not emptied in time"
        )
        return out
    expire(client)  # the next round's connect says whether the broker read it
    return out
