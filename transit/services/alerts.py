"""Working an alert: acknowledge it, assign it, resolve it with a note; each audited.
A caller works only the alerts it may see (:class:`~transit.db.visibility.Visibility`)."""

from __future__ import annotations

from typing import Any

from transit import audit
from transit.db import alerts
from transit.db.query import Conn
from transit.db.visibility import Visibility
from transit.keys import Principal
from transit.services.errors import NotFound, Refused


def act(
    conn: Conn, who: Principal, alert_id: int, action: alerts.Action, **values: str
) -> dict[str, Any]:
    """Apply ``action`` to the alert (with ``assignee`` or ``note`` as it needs), audit
    it under ``alert.<action>`` with those values, and return the alert.

    Raises:
        NotFound: no such alert the caller may see.
        Refused: the alert is resolved already."""
    status = alerts.status_for_update(conn, alert_id, Visibility.of(who))
    if status is None:
        raise NotFound(f"no alert {alert_id}")
    if status == "resolved":
        raise Refused([f"alert {alert_id} is resolved already"])
    alerts.act(conn, alert_id, action, actor=who.actor, **values)
    audit.append(conn, who.actor, f"alert.{action}", f"alert:{alert_id}", values)
    found = alerts.get(conn, alert_id)
    return found or {}
