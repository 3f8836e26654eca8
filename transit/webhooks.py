"""Partner notifications: signed webhooks sent from an outbox table.

A notice is written to ``webhook_outbox`` in the same transaction as what caused it
(a release, a border crossing), so it is neither lost nor sent for something that was
rolled back, and it survives any restart. ``transit notify`` delivers due notices:
an HTTP POST of the JSON payload with

- ``X-Transit-Event``: ``anticipated_arrival`` or ``crossing``;
- ``X-Transit-Delivery``: the outbox id (a receiver drops a repeat by it);
- ``X-Transit-Signature``: ``sha256=`` HMAC-SHA256 of the body with the country's secret.

A crossing notice carries the transit's risk score as the country entered may see it
(:func:`crossing_notice`: level, probability and reasons, scoped by
:meth:`transit.db.visibility.Visibility.redact_risk`), advance information as the WCO
SAFE framework asks. A 2xx answer marks it delivered; anything else is retried with
exponential backoff (``backoff_s`` doubled per attempt, at most an hour), the error kept on the row.

Several senders (``transit notify`` on N machines) share the outbox without sending a
notice twice: each notice is claimed in a transaction of its own with ``FOR UPDATE
SKIP LOCKED`` (other senders skip it), the row lock is held across the POST, and the
mark (delivered, or the next try) commits with it. A sender that dies mid-send loses
its connection, so its transaction rolls back and the notice is free again; one that
hangs holding it is cut off by ``idle_in_transaction_session_timeout`` (``HOLD_S``).
The one case of a re-send is a sender dying between the partner's 2xx and the commit
of the mark: the notice goes again, with the same ``X-Transit-Delivery``. Delivery is
at least once, and exactly once to a partner that drops a delivery id it has had
(docs/cluster-api.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from datetime import datetime
from typing import Any

import httpx
import psycopg

from transit.db import outbox, risk
from transit.db.visibility import Visibility

log = logging.getLogger(__name__)
Conn = psycopg.Connection[Any]
MAX_BACKOFF_S = 3600.0
SEND_TIMEOUT_S = 5.0  # one POST to a partner
HOLD_S = 30  # a claim held this long idle (the sender hangs) is given back


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def enqueue(conn: Conn, event: str, mrn: str, countries: list[str], payload: dict[str, Any]) -> int:
    """Queue a notice for each of these countries that has an endpoint. Returns how many."""
    return outbox.enqueue(conn, event, mrn, countries, payload)


def crossing_notice(conn: Conn, mrn: str, country: str, details: dict[str, Any]) -> dict[str, Any]:
    """The notice to ``country`` of a transit entering it: the crossing's ``details``
    and the transit's current risk score as that country sees it (None: not scored)."""
    score = risk.current(conn, mrn)
    shown = None
    if score is not None:
        shown = {
            "probability": score["probability"],
            "level": score["level"],
            "reasons": score["reasons"],
            "updated_at": score["updated_at"].isoformat(),
        }
    return {"mrn": mrn, **details, "risk": Visibility("country", country).redact_risk(shown)}


def deliver_due(conn: Conn, client: httpx.Client, backoff_s: float = 5.0, limit: int = 50) -> int:
    """Send up to ``limit`` due notices, one transaction each; returns how many were
    delivered. ``conn`` is in autocommit (no transaction of the caller's open).

    Each notice is claimed with ``FOR UPDATE SKIP LOCKED`` and stays locked until its
    outcome commits: other senders never take a notice that is being sent, and a
    sender that dies gives back only the one it was sending."""
    delivered = 0
    for _ in range(limit):
        with conn.transaction():
            claimed = outbox.claim_due(conn, 1)
            if not claimed:
                break
            delivered += _send(conn, client, claimed[0], backoff_s)
    return delivered


def _send(conn: Conn, client: httpx.Client, notice: tuple[Any, ...], backoff_s: float) -> bool:
    """POST one claimed notice and record the outcome in the claim's transaction."""
    oid, event, payload, attempts, url, secret = notice
    body = json.dumps(payload, sort_keys=True).encode()
    error = None
    try:
        resp = client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Transit-Event": event,
                "X-Transit-Delivery": str(oid),
                "X-Transit-Signature": sign(bytes(secret), body),
            },
        )
        if not 200 <= resp.status_code < 300:
            error = f"HTTP {resp.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error is None:
        outbox.delivered(conn, oid)
        return True
    wait = min(MAX_BACKOFF_S, backoff_s * 2**attempts)
    outbox.failed(conn, oid, error, wait)
    log.warning("notice %s to %s failed (%s); next try in %.1f s", oid, url, error, wait)
    return False


def run(
    database_url: str, stop: threading.Event, backoff_s: float = 5.0, poll_s: float = 1.0
) -> None:
    """Deliver due notices until ``stop`` is set (``transit notify``)."""
    with httpx.Client(timeout=SEND_TIMEOUT_S) as client:
        conn: Conn | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(database_url, autocommit=True)
                    # A sender that hangs (not dies) while holding a notice gives it back.
                    conn.execute(f"SET idle_in_transaction_session_timeout = '{HOLD_S}s'")
                if deliver_due(conn, client, backoff_s):
                    continue
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying", exc)
                conn = None
            stop.wait(poll_s)


def pending(conn: Conn) -> list[dict[str, Any]]:
    """Notices not delivered yet, oldest first (for ``transit notify --status``)."""
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in outbox.pending(conn)
    ]
