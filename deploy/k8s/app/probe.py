"""Exec probes of the transit processes that serve no HTTP (Kubernetes, deploy/k8s).

``python probe.py ingest-live``: the ingest worker of this pod (slot ``$POD_NAME`` of
group ``ingest``) beat its slot's heart within the last 30 s. A database that does
not answer is not the worker's fault, and restarting it would not bring the database
back: the probe then passes, and the worker reconnects by itself.

``python probe.py ingest-ready``: the slot is ``running`` (its subscription taken) and
beat within 10 s, after which its peers would fence it.

``python probe.py process``: the container's main process is neither stopped nor a
zombie (the notifier keeps no heartbeat of its own to ask for).
"""

from __future__ import annotations

import os
import sys

LIVE_S = 30.0
READY_S = 10.0


def _slot() -> dict[str, object] | str | None:
    import psycopg

    from transit.config import get_settings
    from transit.db.membership import slots

    me = os.environ["POD_NAME"]
    try:
        with psycopg.connect(get_settings().database_url, connect_timeout=3) as conn:
            rows = [r for r in slots(conn, "ingest") if r["client_id"] == me]
    except psycopg.OperationalError:
        return "database away"
    return rows[0] if rows else None


def _process_runs() -> bool:
    with open("/proc/1/status") as status:
        state = next(line for line in status if line.startswith("State:"))
    return state.split()[1] not in ("T", "t", "Z")


def main(argv: list[str]) -> int:
    """0 when the probe passes, 1 when not."""
    mode = argv[0] if argv else ""
    if mode == "process":
        return 0 if _process_runs() else 1
    if mode not in ("ingest-live", "ingest-ready"):
        sys.stderr.write("usage: probe.py ingest-live|ingest-ready|process\n")
        return 2
    slot = _slot()
    if isinstance(slot, str):
        return 0 if mode == "ingest-live" else 1
    if slot is None:
        return 1
    silent = float(slot["silent_s"])  # type: ignore[arg-type]
    if mode == "ingest-live":
        return 0 if silent < LIVE_S else 1
    return 0 if slot["state"] == "running" and silent < READY_S else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
