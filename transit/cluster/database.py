"""The highly available database of the cluster profile (issue 14, point 2), as
scripts/cluster-db.sh runs it: Patroni with one etcd member, this project's PostgreSQL
15 with TimescaleDB as a primary and a synchronous standby. What a test, a kill test or
``transit doctor`` needs: start and stop, the members' roles from Patroni's REST API,
the primary's postmaster (to SIGKILL it), waiting for a leader, the clients' URL.

Ports: PostgreSQL node i on ``pg_port + i`` (``CLUSTER_DB_PG_PORT``, default 54340),
Patroni's REST API on ``base + i`` (``CLUSTER_DB_PORT_BASE``, default 18900), etcd on
``base + 10`` (client) and ``base + 11`` (peer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transit.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "cluster-db.sh"
RUN_DIR = PROJECT_ROOT / ".run" / "cluster-db"
DEFAULT_PG_PORT = 54340
DEFAULT_BASE = 18900
NODES = ("pg1", "pg2")


@dataclass(frozen=True)
class Member:
    """One PostgreSQL node as Patroni sees it."""

    name: str  # pg1, pg2
    role: str  # leader, sync_standby, replica
    state: str  # running, streaming, stopped, starting, crashed, ...
    lag: int | None  # bytes of WAL behind the leader (None for the leader, or unknown)
    port: int  # its PostgreSQL port
    timeline: int | None


class ClusterDatabase:
    """The processes of ``scripts/cluster-db.sh`` with these ports."""

    def __init__(self, pg_port: int | None = None, base: int | None = None) -> None:
        self.pg_port = pg_port or int(os.environ.get("CLUSTER_DB_PG_PORT", DEFAULT_PG_PORT))
        self.base = base or int(os.environ.get("CLUSTER_DB_PORT_BASE", DEFAULT_BASE))

    def _script(self, command: str, timeout: float = 300) -> str:
        # the command and its one argument (a database's name), never through a shell
        env = dict(
            os.environ, CLUSTER_DB_PG_PORT=str(self.pg_port), CLUSTER_DB_PORT_BASE=str(self.base)
        )
        done = subprocess.run(
            ["bash", str(SCRIPT), *command.split()],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0 and command != "status":
            raise RuntimeError(f"cluster-db.sh {command} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> str:
        """Start what is not running (idempotent; installs the packages when absent);
        returns once there is a leader and a synchronous standby, the ``transit``
        database exists and the migrations are applied."""
        return self._script("start", timeout=900)

    def stop(self) -> str:
        """Stop both Patroni nodes (the standby first) and etcd."""
        return self._script("stop")

    def status(self) -> str:
        """The script's status report."""
        return self._script("status")

    def url(self) -> str:
        """The libpq multi-host URL of the ``transit`` database: both nodes, the
        read-write one chosen (``target_session_attrs=read-write``)."""
        return self._script("url").strip()

    def fresh_database(self, name: str) -> str:
        """A database of a test's own on the cluster, made anew (dropped first when
        present) with TimescaleDB and PostGIS, owned by ``transit``; returns its
        multi-host URL. The caller applies the migrations."""
        return self._script(f"database {name}").strip().splitlines()[-1]

    def rest_port(self, name: str) -> int:
        """The Patroni REST port of node ``pg1`` or ``pg2``."""
        return self.base + NODES.index(name)

    def _get(self, name: str, path: str) -> Any:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.rest_port(name)}{path}", timeout=2
        ) as r:
            return json.loads(r.read())

    def roles(self) -> list[Member]:
        """Every member, from the first Patroni that answers (its ``/cluster``).

        Raises:
            ConnectionError: no Patroni answers.
        """
        for name in NODES:
            try:
                found = self._get(name, "/cluster")
            except (OSError, urllib.error.URLError, ValueError):
                continue
            return [
                Member(
                    m["name"],
                    m["role"],
                    m["state"],
                    _lag(m.get("lag")),
                    int(m.get("port", 0)),
                    m.get("timeline"),
                )
                for m in found.get("members", [])
            ]
        raise ConnectionError(f"no Patroni answers on ports {self.base}..{self.base + 1}")

    def leader(self) -> Member | None:
        """The running leader, if there is one."""
        try:
            members = self.roles()
        except ConnectionError:
            return None
        return next((m for m in members if m.role == "leader" and m.state == "running"), None)

    def wait_for_leader(self, timeout: float, other_than: str | None = None) -> Member:
        """The running leader once there is one (not ``other_than`` when given).

        Raises:
            TimeoutError: none within ``timeout`` seconds (says what Patroni last saw).
        """

        def pick(m: Member) -> bool:
            return m.role == "leader" and m.state == "running" and m.name != other_than

        return self._wait(timeout, pick, f"no leader{_but(other_than)}", 0.1)

    def wait_for_sync_standby(self, timeout: float, name: str | None = None) -> Member:
        """The synchronous standby once it streams (node ``name`` when given).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """

        def pick(m: Member) -> bool:
            # Patroni 3.0 says "running" of a streaming replica, later versions "streaming"
            streams = m.state in ("running", "streaming")
            return m.role == "sync_standby" and streams and name in (None, m.name)

        return self._wait(timeout, pick, "no synchronous standby", 0.2)

    def _wait(
        self, timeout: float, pick: Callable[[Member], bool], missing: str, every: float
    ) -> Member:
        deadline = time.monotonic() + timeout
        seen: list[Member] | str = "no answer"
        while True:
            try:
                seen = self.roles()
                found = next((m for m in seen if pick(m)), None)
                if found is not None:
                    return found
            except ConnectionError as exc:
                seen = str(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{missing} after {timeout:.0f} s: {seen}")
            time.sleep(every)

    def postmaster_pid(self, name: str) -> int:
        """The pid of node ``name``'s postmaster (the first line of its postmaster.pid).

        Raises:
            FileNotFoundError: that node's PostgreSQL is not running.
        """
        return int((RUN_DIR / name / "postmaster.pid").read_text().split()[0])

    def primary_pid(self) -> int:
        """The pid of the leader's postmaster.

        Raises:
            RuntimeError: no running leader.
        """
        lead = self.leader()
        if lead is None:
            raise RuntimeError("the cluster has no running leader")
        return self.postmaster_pid(lead.name)

    def kill_primary(self) -> tuple[str, int]:
        """SIGKILL the leader's postmaster (Patroni itself lives on); returns the node's
        name and the pid killed."""
        lead = self.leader()
        if lead is None:
            raise RuntimeError("the cluster has no running leader")
        pid = self.postmaster_pid(lead.name)
        os.kill(pid, signal.SIGKILL)
        return lead.name, pid

    def log(self, name: str) -> Path:
        """Patroni's log of node ``name`` (``etcd`` for etcd's); PostgreSQL's own is
        ``log/<name>/postgresql.log`` beside it."""
        return RUN_DIR / f"{name}.log"


def _lag(value: Any) -> int | None:
    # Patroni gives bytes, or "unknown" when it cannot tell
    return int(value) if isinstance(value, int) else None


def _but(name: str | None) -> str:
    return f" other than {name}" if name else ""
