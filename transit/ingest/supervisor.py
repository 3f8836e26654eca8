"""``transit ingest --workers N``: N worker processes on the shared subscription.

Each worker is its own process (``transit-ingest-<i>``, a persistent MQTT session of
its own). A worker that dies, however it dies, is started again with the same id, so
the broker hands it the messages it had not acknowledged. SIGTERM stops them all.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)


def worker_command(index: int, extra: list[str]) -> list[str]:
    """The command line of worker ``index``. One watchdog is enough: the wall-clock
    rules read the last-heard times that every worker writes."""
    cmd = [
        sys.executable,
        "-m",
        "transit.cli",
        "ingest",
        "--workers",
        "1",
        "--client-id",
        f"transit-ingest-{index}",
        *extra,
    ]
    return cmd if index == 0 else [*cmd, "--no-watchdog"]


def supervise(workers: int, extra: list[str], stop: threading.Event) -> int:
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
                procs[i] = subprocess.Popen(worker_command(i, extra))
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
