"""The MQTT link: paho 2.x clients configured the one way the project uses them."""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from transit.config import Settings
from transit.devices import payload as wire

# The protocol versions a device may speak, by the name the command line takes.
MQTT_VERSIONS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


def make_client(
    settings: Settings,
    username: str,
    password: str,
    *,
    client_id: str | None = None,
    manual_ack: bool = False,
    persistent: bool = False,
    version: str = "5",
) -> mqtt.Client:
    """An MQTT client for the project's broker (not yet connected): MQTT 5, or
    ``version`` "3.1.1" as most fielded trackers speak it."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{username}-{uuid.uuid4().hex[:8]}",
        protocol=MQTT_VERSIONS[version],
        manual_ack=manual_ack,
    )
    client.username_pw_set(username, password)
    if settings.mqtt_tls:
        # Server certificate checked against the deployment's CA (or the system's).
        ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
        client.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
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
