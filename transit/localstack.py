"""A broker and a database of one's own, and what drives them: sessions opened before
publishing, messages published at QoS 1, a session drained by a subscriber that only
counts, ingest worker processes started and stopped.

A second Mosquitto (same binary, password file and ACL as the project's, its own port
and persistence) and the ``transit_bench`` database, so that a benchmark, or a test
that kills brokers and workers, never touches the shared stack's data, and nothing
else consumes its messages. The benchmarks and the tests both take it from here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import psycopg

from transit.config import Settings
from transit.db import workers
from transit.mqtt import connect_properties, make_client

DEVICE_TOPICS = "transit/v1/devices/+/+"


def bench_settings(settings: Settings, port: int) -> Settings:
    """The settings pointing at the benchmark's broker and database."""
    parts = urlsplit(settings.database_url)
    db_url = urlunsplit(parts._replace(path="/transit_bench"))
    return settings.model_copy(
        update={"database_url": db_url, "mqtt_url": f"mqtt://127.0.0.1:{port}"}
    )


class BenchBroker:
    """A second Mosquitto with the project's users and ACL, fresh persistence."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.port = port
        self.dir = settings.run_dir / "bench" / "mosquitto"
        self.main = settings.run_dir / "mosquitto"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start with empty persistence."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "data").mkdir(parents=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    "allow_anonymous false",
                    f"password_file {self.main / 'passwd'}",
                    f"acl_file {self.main / 'acl'}",
                    f"listener {self.port} 127.0.0.1",
                    "persistence true",
                    f"persistence_location {self.dir / 'data'}/",
                    "max_queued_messages 0",
                    "max_inflight_messages 1000",
                    f"log_dest file {self.dir / 'mosquitto.log'}",
                    "user mosquitto",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mosquitto", "mosquitto")
            shutil.chown(self.dir / "data", "mosquitto", "mosquitto")
        self._launch()

    def restart(self) -> None:
        """Stop (the broker saves its sessions and queues) and start again."""
        self.stop()
        self._launch()

    def _launch(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.dir / "mosquitto.conf")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the benchmark's broker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


def connect(
    settings: Settings, user: str, password: str, client_id: str, persistent: bool
) -> mqtt.Client:
    c = make_client(settings, user, password, client_id=client_id)
    ready = threading.Event()
    c.on_connect = lambda *a: ready.set()
    if persistent:
        c.connect(
            settings.mqtt_host,
            settings.mqtt_port,
            clean_start=False,
            properties=connect_properties(3600),
        )
    else:
        c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    if not ready.wait(10):
        raise RuntimeError(f"{client_id} could not connect")
    return c


def open_session(settings: Settings, user: str, password: str, client_id: str, group: str) -> None:
    """Create a persistent session subscribed to the device topics, then leave it."""
    c = connect(settings, user, password, client_id, persistent=True)
    c.subscribe(f"$share/{group}/{DEVICE_TOPICS}", qos=1)[1]
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def publish_all(settings: Settings, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker acknowledges; returns msg/s."""
    c = connect(
        settings,
        settings.mqtt_admin_user,
        settings.mqtt_admin_password,
        f"bench-pub-{os.getpid()}",
        persistent=False,
    )
    t0 = time.perf_counter()
    infos = [c.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    rate = len(messages) / (time.perf_counter() - t0)
    c.disconnect()
    c.loop_stop()
    return rate


def drain(
    settings: Settings, client_id: str, expected: int, handle: Callable[[Any], None] | None
) -> float:
    """Resume a persistent session and take ``expected`` queued messages, handing each
    to ``handle`` (None: only count). Returns msg/s from the first to the last."""
    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal count, first, last
        if handle is not None:
            handle(msg)
        now = time.perf_counter()
        if count == 0:
            first = now
        count += 1
        last = now
        if count >= expected:
            done.set()

    c = make_client(
        settings, settings.mqtt_admin_user, settings.mqtt_admin_password, client_id=client_id
    )
    c.on_message = on_message
    c.connect(
        settings.mqtt_host,
        settings.mqtt_port,
        clean_start=False,
        properties=connect_properties(3600),
    )
    c.loop_start()
    done.wait(300)
    c.disconnect()
    c.loop_stop()
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


def start_workers(settings: Settings, count: int, group: str) -> list[subprocess.Popen[bytes]]:
    """``count`` ``transit ingest`` processes on ``group``, on the benchmark's broker and
    database (client ids ``<group>-<i>``; open their sessions first)."""
    env = {
        **os.environ,
        "TRANSIT_DATABASE_URL": settings.database_url,
        "TRANSIT_MQTT_URL": settings.mqtt_url,
    }
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "transit.cli",
                "ingest",
                "--client-id",
                f"{group}-{i}",
                "--group",
                group,
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL what is still running after ``timeout`` seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_stats(settings: Settings) -> list[dict[str, Any]]:
    """Every worker's counters, as it last stored them."""
    with psycopg.connect(settings.database_url) as conn:
        return [stats for _, _, stats in workers.all_stats(conn)]
