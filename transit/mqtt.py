"""The MQTT link: paho 2.x clients configured the one way the project uses them."""

from __future__ import annotations

import ssl
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from transit.config import Settings


def make_client(
    settings: Settings,
    username: str,
    password: str,
    *,
    client_id: str | None = None,
    manual_ack: bool = False,
    persistent: bool = False,
) -> mqtt.Client:
    """An MQTT 5 client for the project's broker (not yet connected)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{username}-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
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
