"""The MQTT link: paho 2.x clients configured the one way the project uses them."""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from transit.config import Settings
from transit.devices import payload as wire

# The protocol versions a device may speak, by the name the command line takes.
MQTT_VERSIONS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


@dataclass(frozen=True)
class ClientCert:
    """A device's X.509 client certificate and private key (PEM files)."""

    certfile: Path
    keyfile: Path

    @classmethod
    def in_dir(cls, directory: Path, device_id: str) -> ClientCert:
        """``<device id>.crt`` and ``<device id>.key`` in ``directory``."""
        return cls(directory / f"{device_id}.crt", directory / f"{device_id}.key")


def make_client(
    settings: Settings,
    username: str,
    password: str,
    *,
    client_id: str | None = None,
    manual_ack: bool = False,
    persistent: bool = False,
    version: str = "5",
    cert: ClientCert | None = None,
) -> mqtt.Client:
    """An MQTT client for the project's broker (not yet connected): MQTT 5, or
    ``version`` "3.1.1" as most fielded trackers speak it. With ``cert``, the client
    presents that certificate over TLS (an ``mqtts://`` URL) and sends no username or
    password: the broker takes the certificate's name as the username."""
    if cert is not None and not settings.mqtt_tls:
        raise ValueError(
            f"a client certificate needs an mqtts:// broker URL, not {settings.mqtt_url}"
        )
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{username}-{uuid.uuid4().hex[:8]}",
        protocol=MQTT_VERSIONS[version],
        manual_ack=manual_ack,
    )
    if cert is None:
        client.username_pw_set(username, password)
    if settings.mqtt_tls:
        # Server certificate checked against the deployment's CA (or the system's).
        ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
        client.tls_set(
            ca_certs=ca,
            certfile=str(cert.certfile) if cert else None,
            keyfile=str(cert.keyfile) if cert else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def connect_properties(session_expiry_s: int) -> Properties:
    """CONNECT properties keeping the session (and its queued QoS 1 messages) alive."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    return props


def signed(key: bytes | None, topic: str, body: bytes, version: str) -> tuple[bytes, Any]:
    """What a device publishes for ``body``: the payload and PUBLISH properties. With a
    key, MQTT 5 carries the signature as the user property ``sig``; MQTT 3.1.1, which
    has no user properties, sends a signed envelope. Without a key, the body as is."""
    if key is None:
        return body, None
    if version != "5":
        return wire.envelope(key, topic, body), None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("sig", wire.sign(key, topic, body))
    return body, props


def broker_addresses(settings: Settings) -> list[tuple[str, int]]:
    """The (host, port) of each broker URL in ``settings.mqtt_url`` (a cluster's nodes)."""
    out = []
    for url in settings.mqtt_urls:
        parts = urlsplit(url)
        out.append(
            (parts.hostname or "127.0.0.1", parts.port or (8883 if settings.mqtt_tls else 1883))
        )
    return out


class Failover:
    """Moves a paho client to the next broker of a list whenever its connection is lost
    or a connection attempt fails, round the list; paho then resends the QoS 1 messages
    not yet acknowledged, to the new node. ``outages`` records how long each loss
    lasted until the next CONNACK (seconds).

    Args:
        client: a client from :func:`make_client`, not yet connected.
        addresses: the brokers, (host, port); the client starts on ``addresses[first]``.
    """

    def __init__(
        self, client: mqtt.Client, addresses: list[tuple[str, int]], first: int = 0
    ) -> None:
        if not addresses:
            raise ValueError("no broker address")
        self.client = client
        self.addresses = addresses
        self.index = first % len(addresses)
        self.connected = threading.Event()
        self.outages: list[float] = []
        self._lost_at: float | None = None
        self._closing = False
        self._keepalive = 60
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail

    @property
    def address(self) -> tuple[str, int]:
        """The broker the client is on, or trying."""
        return self.addresses[self.index]

    def start(self, keepalive: int = 60) -> None:
        """Connect (in paho's network thread) to the first broker."""
        self._keepalive = keepalive
        host, port = self.address
        self.client.connect_async(host, port, keepalive=keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect for good (no failover) and stop the network thread."""
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def _next(self) -> None:
        self.index = (self.index + 1) % len(self.addresses)
        host, port = self.address
        # Takes effect on paho's next reconnect attempt, from its own thread.
        self.client.connect_async(host, port, keepalive=self._keepalive)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        if self._lost_at is not None:
            self.outages.append(time.monotonic() - self._lost_at)
            self._lost_at = None
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        self.connected.clear()
        if self._closing:
            return
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        self._next()

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        if not self._closing:
            self._next()
