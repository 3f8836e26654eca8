"""Ingest's source on the clustered broker: batches from the quorum queue over AMQP.

Workers are competing consumers of ``transit.ingest`` (RabbitMQ 3.10's MQTT plugin has
no shared subscriptions); each takes a batch, commits it to the database, then acks
it. A message is removed from the queue only by that ack, so a worker or a node that
dies before it leaves the message to be delivered again (``redelivered``), and the
database's unique key on ``(device_id, seq)`` writes it once.

When the node a consumer is on dies, the source connects to the next node of its
list by itself; deliveries of the lost channel can no longer be acked (their tags
belonged to it) and come back through the queue.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pika  # type: ignore[import-untyped]
from pika.exceptions import AMQPError  # type: ignore[import-untyped]

from transit.cluster.broker import INGEST_QUEUE, declare_ingest_queue

log = logging.getLogger(__name__)
logging.getLogger("pika").setLevel(logging.WARNING)  # its INFO is every socket step


@dataclass(frozen=True)
class Delivery:
    """One message from the queue, as ingest needs it."""

    topic: str  # the MQTT topic it was published on
    payload: bytes
    headers: dict[str, Any]
    redelivered: bool  # delivered before (to a consumer that did not ack it)
    tag: int
    generation: int  # which connection of the source delivered it


def topic_of(routing_key: str) -> str:
    """The MQTT topic of a routing key (the MQTT plugin maps ``/`` to ``.``)."""
    return routing_key.replace(".", "/")


@dataclass
class SourceStats:
    """What a source went through: reconnections and the time each took."""

    reconnects: int = 0
    failover_s: list[float] = field(default_factory=list)


class AmqpSource:
    """A consumer of the ingest queue that fails over across a cluster's nodes.

    Args:
        urls: AMQP URLs, one per node (``amqp://user:password@host:port/%2F``); the
            first is tried first.
        queue: the quorum queue to consume (declared if missing).
        prefetch: deliveries in flight before an ack; a batch is at most this large.
        retry_s: how long to keep trying the nodes before giving up on a reconnect.
    """

    def __init__(
        self,
        urls: Sequence[str],
        queue: str = INGEST_QUEUE,
        prefetch: int = 500,
        retry_s: float = 60.0,
    ) -> None:
        if not urls:
            raise ValueError("no AMQP URL")
        self.urls = list(urls)
        self.queue = queue
        self.prefetch = prefetch
        self.retry_s = retry_s
        self.stats = SourceStats()
        self.generation = 0
        self._conn: Any = None
        self._channel: Any = None
        self._buffer: list[Delivery] = []

    def _connect(self) -> None:
        deadline = time.monotonic() + self.retry_s
        start = 0
        while True:
            for i in range(len(self.urls)):
                url = self.urls[(start + i) % len(self.urls)]
                try:
                    params = pika.URLParameters(url)
                    params.heartbeat = 10
                    params.blocked_connection_timeout = 30
                    conn = pika.BlockingConnection(params)
                    channel = conn.channel()
                    declare_ingest_queue(channel, self.queue)
                    channel.basic_qos(prefetch_count=self.prefetch)
                    channel.basic_consume(self.queue, self._on_message)
                except AMQPError as exc:
                    log.warning("AMQP node %s unavailable: %r", params.port, exc)
                    continue
                self._conn, self._channel = conn, channel
                self.generation += 1
                # The node that answered comes first next time.
                self.urls = (
                    self.urls[(start + i) % len(self.urls) :]
                    + self.urls[: (start + i) % len(self.urls)]
                )
                return
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"no AMQP node of {len(self.urls)} answered in {self.retry_s} s"
                )
            time.sleep(0.5)
            start += 1

    def _on_message(self, _channel: Any, method: Any, props: Any, body: bytes) -> None:
        self._buffer.append(
            Delivery(
                topic=topic_of(method.routing_key),
                payload=body,
                headers=dict(props.headers or {}),
                redelivered=bool(method.redelivered),
                tag=int(method.delivery_tag),
                generation=self.generation,
            )
        )

    def _drop_connection(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._buffer.clear()  # their tags died with the channel; the queue delivers them again
        if conn is not None:
            with contextlib.suppress(AMQPError):
                conn.close()

    def next_batch(self, max_size: int | None = None, wait_s: float = 1.0) -> list[Delivery]:
        """The deliveries that arrived within ``wait_s`` (at most ``max_size``); empty
        when none did. Reconnects to another node when the current one is lost.

        Raises:
            ConnectionError: no node answered for ``retry_s`` seconds.
        """
        size = min(max_size or self.prefetch, self.prefetch)
        deadline = time.monotonic() + wait_s
        while len(self._buffer) < size:
            if self._conn is None:
                lost = time.monotonic()
                self._connect()
                if self.generation > 1:
                    self.stats.reconnects += 1
                    self.stats.failover_s.append(time.monotonic() - lost)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self._conn.process_data_events(time_limit=min(left, 0.2))
            except AMQPError as exc:
                log.warning("AMQP connection lost: %r", exc)
                self._drop_connection()
            if self._buffer and len(self._buffer) >= size:
                break
        batch, self._buffer = self._buffer[:size], self._buffer[size:]
        return batch

    def ack(self, batch: Sequence[Delivery]) -> bool:
        """Acknowledge a batch after its commit: the queue forgets it. False when the
        batch came over a connection since lost (the queue delivers it again)."""
        if not batch:
            return True
        last = batch[-1]
        if last.generation != self.generation or self._channel is None:
            return False
        try:
            # Deliveries come in tag order and batches are taken in turn, so every tag
            # up to the batch's last is this batch's or an earlier, acked one.
            self._channel.basic_ack(delivery_tag=last.tag, multiple=True)
        except AMQPError as exc:
            log.warning("ack lost with the connection: %r", exc)
            self._drop_connection()
            return False
        return True

    def close(self) -> None:
        """Close the connection; unacked deliveries go back to the queue."""
        self._drop_connection()
