"""The rendezvous rule's state (table ``rendezvous_state``, one row)."""

from __future__ import annotations

import json
from typing import Any

from transit.db.query import Conn, row, run


def load(conn: Conn) -> dict[str, Any] | None:
    """The episodes as the last lease holder left them, or None."""
    found = row(conn, "SELECT state FROM rendezvous_state WHERE id = 1")
    return None if found is None else dict(found["state"])


def save(conn: Conn, state: dict[str, Any]) -> None:
    """Keep the episodes, in the caller's transaction."""
    run(
        conn,
        "INSERT INTO rendezvous_state (id, state) VALUES (1, %s) ON CONFLICT (id)"
        " DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        (json.dumps(state),),
    )
