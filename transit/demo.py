"""``transit demo``: the API, an ingest worker and a simulated fleet, until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psycopg

from transit import keys
from transit.config import Settings


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "transit.cli", *args], env=os.environ.copy())


def run_demo(settings: Settings, trucks: int, seed: int) -> int:
    """Start everything, print where to look and what is happening, stop on Ctrl-C."""
    base = f"http://{settings.api_host}:{settings.api_port}"
    # Keys for this demo, one per role a person may try (stored hashed, as always).
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        demo_keys = {
            "control room": keys.create(conn, "control_room", label="demo", actor="demo"),
            "admin": keys.create(conn, "admin", label="demo", actor="demo"),
            "officer THBKK001": keys.create(
                conn, "officer", office="THBKK001", label="demo", actor="demo"
            ),
            "partner TH": keys.create(conn, "partner", country="TH", label="demo", actor="demo"),
        }
        conn.commit()
    commands = [
        ("api",),
        ("ingest",),
        ("notify",),
        ("sim", "--trucks", str(trucks), "--seed", str(seed), "--provision"),
    ]
    procs = [_spawn(*c) for c in commands]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"\ntransit demo: {trucks} simulated trucks on three ACTS corridors (SG, MY, TH, LA)\n"
        f"  control room  {base}/map   (sign in with the control room key below)\n"
        f"  API docs      {base}/docs\n"
        f"  alerts        {base}/api/v1/alerts   (header X-API-Key)\n"
        f"  health        {base}/health\n"
        + "".join(f"  key {role:<16} {key}\n" for role, key in demo_keys.items())
        + "Ctrl-C stops everything.\n",
        flush=True,
    )
    try:
        while not stopping:
            for _ in range(50):
                if stopping:
                    break
                time.sleep(0.2)
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    print(f"demo: {commands[i][0]} exited ({p.returncode}); restarting", flush=True)
                    procs[i] = _spawn(*commands[i])
            try:
                with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
                    row = conn.execute(
                        "SELECT (SELECT count(*) FROM fixes), (SELECT count(*) FROM alerts)"
                    ).fetchone()
                req = urllib.request.Request(
                    f"{base}/api/v1/alerts?limit=1",
                    headers={"X-API-Key": demo_keys["control room"]},
                )
                with urllib.request.urlopen(req, timeout=3) as r:
                    newest = json.load(r)["items"]
                latest = f"; newest alert: {newest[0]['type']} {newest[0]['mrn']}" if newest else ""
                print(
                    f"demo: {row[0] if row else 0} fixes stored, "
                    f"{row[1] if row else 0} alerts{latest}",
                    flush=True,
                )
            except (OSError, psycopg.Error) as exc:
                print(f"demo: waiting for the stack ({exc})", flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        print("demo: stopped", flush=True)
    return 0
