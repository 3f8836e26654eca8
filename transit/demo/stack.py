"""The demo's processes: the ``transit`` services it starts and, for its check, a broker
of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from transit import broker
from transit.config import Settings


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, deadline: float) -> bool:
    """Whether something accepts connections on the loopback ``port`` before ``deadline``."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Services:
    """``transit`` subcommands run as child processes with one environment, stopped
    together. With ``log_dir``, each one's output goes to ``log_dir/<name>.log``."""

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
        self.commands: dict[str, tuple[str, ...]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, *args: str) -> None:
        """Start ``transit ARGS`` under ``name`` (again, if it ran before)."""
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            out = (self.log_dir / f"{name}.log").open("ab")
            self._logs.append(out)
        self.commands[name] = args
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "transit.cli", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )

    def exited(self) -> dict[str, int]:
        """The services that have exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def restart(self, name: str) -> None:
        """Start an exited service again with the same arguments."""
        self.start(name, *self.commands[name])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every service still running, the last started first; SIGKILL one
        that outlasts ``timeout``."""
        for p in reversed(self.procs.values()):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self._logs:
            f.close()

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines a service wrote (empty without a log directory)."""
        if self.log_dir is None or not (self.log_dir / f"{name}.log").exists():
            return ""
        text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def api_answer(base: str, proc: subprocess.Popen[bytes] | None, deadline: float) -> str | None:
    """None once ``base``/health answers 200; otherwise why not, by ``deadline``. With
    ``proc`` (the API process), its exit is the reason at once."""
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return f"the API exited with code {proc.returncode}"
        try:
            r = httpx.get(f"{base}/health", timeout=2.0)
            if r.status_code == 200:
                return None
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.2)
    return f"the API did not answer at {base}/health ({last})"


class OwnBroker:
    """A Mosquitto of the check's own on a free loopback port, set up as the local
    stack's (no anonymous access; password file and ACL written by ``transit broker
    sync``), with its files under ``run_dir/mosquitto``.

    The API rewrites the broker's password file from the devices of its database when
    one registers; with a broker of its own, the check's database never replaces the
    devices of the shared broker, whatever runs beside it.
    """

    def __init__(self, run_dir: Path, port: int) -> None:
        self.dir = run_dir / "mosquitto"
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, settings: Settings, device_ids: list[str]) -> None:
        """Write the users of ``settings`` and ``device_ids``, start, wait for the port.

        Raises:
            RuntimeError: the broker did not listen within ten seconds.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the broker drops to its own user and must read its files
            shutil.chown(self.dir, "mosquitto", "mosquitto")
        broker.write_files(settings, device_ids, self.dir)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "# Written by `transit demo --check --own-broker`.",
                    "per_listener_settings false",
                    "allow_anonymous false",
                    f"password_file {self.dir / 'passwd'}",
                    f"acl_file {self.dir / 'acl'}",
                    f"listener {self.port} 127.0.0.1",
                    "persistence false",
                    "max_queued_messages 100000",
                    f"log_dest file {self.dir / 'mosquitto.log'}",
                    f"pid_file {self.dir / 'mosquitto.pid'}",
                    "user mosquitto",
                    "",
                ]
            )
        )
        with (self.dir / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err
            )
        if not wait_for_port(self.port, time.monotonic() + 10):
            self.stop()
            said = (self.dir / "stderr.log").read_text(errors="replace").strip()
            raise RuntimeError(
                f"the check's own Mosquitto did not listen on port {self.port}: {said}"
            )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ten seconds)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
