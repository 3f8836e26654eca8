"""The API and notifier processes of the cluster profile, as scripts/cluster-api.sh runs
them: N ``transit api`` behind HAProxy, N ``transit notify``. What a test or a kill
test needs to drive them: start and stop, the pid of each process, HAProxy's view of
its servers and its admin socket (drain a server, make it ready again).

Ports: HAProxy on ``base`` (HTTP and the live feed), API i on ``base + i``, stats and
health on ``base + 9``; ``CLUSTER_API_PORT_BASE`` moves them (default 18920).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from transit.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "cluster-api.sh"
RUN_DIR = PROJECT_ROOT / ".run" / "cluster-api"
DEFAULT_BASE = 18920


@dataclass(frozen=True)
class Server:
    """One API process as HAProxy sees it."""

    name: str  # api1, api2, ...
    status: str  # UP, DOWN, DRAIN, "UP 1/2" (going down), ...
    check: str  # the last health check's result (L7OK, L4CON, ...)
    sessions: int  # current sessions (an open WebSocket counts for as long as it lasts)
    retries: int  # requests retried on a connection or an answer that failed (wretr)
    redispatches: int  # requests sent to another server than the first (wredis)


class ClusterApi:
    """The processes of ``scripts/cluster-api.sh`` with these ports and counts."""

    def __init__(
        self,
        base: int | None = None,
        apis: int = 2,
        notifiers: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base or int(os.environ.get("CLUSTER_API_PORT_BASE", DEFAULT_BASE))
        self.apis = apis
        self.notifiers = notifiers
        self.env = env or {}  # for the processes: TRANSIT_DATABASE_URL (the HA database), ...

    @property
    def url(self) -> str:
        """The API through HAProxy."""
        return f"http://127.0.0.1:{self.base}"

    @property
    def stats_url(self) -> str:
        """HAProxy's stats page (``;csv`` for the machine-readable form)."""
        return f"http://127.0.0.1:{self.base + 9}/stats"

    def api_port(self, i: int) -> int:
        """The port of API process ``i`` (1-based)."""
        return self.base + i

    def _script(self, command: str) -> str:
        env = dict(
            os.environ,
            **self.env,
            CLUSTER_API_PORT_BASE=str(self.base),
            CLUSTER_API_N=str(self.apis),
            CLUSTER_NOTIFY_N=str(self.notifiers),
        )
        done = subprocess.run(
            ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0 and command != "status":
            raise RuntimeError(f"cluster-api.sh {command} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> str:
        """Start what is not running (idempotent); returns once HAProxy sees every API up."""
        return self._script("start")

    def stop(self) -> str:
        """Stop HAProxy, the APIs and the notifiers."""
        return self._script("stop")

    def status(self) -> str:
        """The script's status report."""
        return self._script("status")

    def pid(self, name: str) -> int:
        """The pid of ``api1``, ``notify2``, ``haproxy``... from its pid file."""
        return int((RUN_DIR / f"{name}.pid").read_text().strip())

    def kill(self, name: str) -> int:
        """SIGKILL one process of the cluster; returns its pid."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def servers(self) -> dict[str, Server]:
        """HAProxy's servers of the API backend, by name."""
        with urllib.request.urlopen(self.stats_url + ";csv", timeout=5) as r:
            text = r.read().decode().lstrip("# ")
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row["pxname"] == "api" and row["svname"] not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = Server(
                    row["svname"],
                    row["status"],
                    row["check_status"],
                    int(row["scur"] or 0),
                    int(row["wretr"] or 0),
                    int(row["wredis"] or 0),
                )
        return out

    def admin(self, command: str) -> str:
        """One command on HAProxy's admin socket, e.g. ``set server api/api2 state drain``."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(RUN_DIR / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def log(self, name: str) -> Path:
        """The log file of one process."""
        return RUN_DIR / f"{name}.log"
