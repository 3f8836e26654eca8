"""``transit ingest --workers N``: N worker processes on the shared subscription.

Each worker is its own process in a slot of its own (``<prefix>-<i>``, a persistent
MQTT session; the prefix is ``transit-ingest`` unless ``--client-id`` sets one, which
each machine running several workers of one group needs). A worker that dies, however
it dies, is started again with the same id: it waits for its slot if a live worker
is draining the session meanwhile (:mod:`transit.ingest.membership`), then takes it
up. SIGTERM stops them all, each leaving the group gracefully.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)


def worker_command(index: int, extra: list[str], prefix: str = "transit-ingest") -> list[str]:
    """The command line of worker ``index`` (which of them runs the wall-clock rules
    is settled by the watchdog lease, not here)."""
    return [
        sys.executable,
        "-m",
        "transit.cli",
        "ingest",
        "--workers",
        "1",
        "--client-id",
        f"{prefix}-{index}",
        *extra,
    ]


def supervise(
    workers: int, extra: list[str], stop: threading.Event, prefix: str = "transit-ingest"
) -> int:
    """Run ``workers`` processes until ``stop``; restart any that exits."""
    procs: dict[int, subprocess.Popen[bytes]] = {}
    restarts = 0
    while not stop.is_set():
        for i in range(workers):
            p = procs.get(i)
            if p is None or p.poll() is not None:
                if p is not None:
                    restarts += 1
                    log.warning("worker %d exited with %s; restarting", i, p.returncode)
                procs[i] = subprocess.Popen(worker_command(i, extra, prefix))
        stop.wait(0.2)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return restarts
