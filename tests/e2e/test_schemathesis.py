"""A bounded schemathesis run against the OpenAPI document: no server error and no
response that breaks its schema. The API under test runs on the benchmark database,
so the fuzzer's writes never touch the development data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import psycopg

from tests.conftest import ROOT, free_port
from transit import keys
from transit.db.migrate import migrate
from transit.geofence.corridor import acts_network
from transit.localstack import bench_settings
from transit.provision import import_geojson


def test_schemathesis_finds_no_server_error_and_no_schema_break(settings, capsys) -> None:
    bench = bench_settings(settings, settings.mqtt_port + 1)
    with psycopg.connect(bench.database_url) as conn:
        migrate(conn)
        import_geojson(conn, acts_network())
        key = keys.create(conn, "admin", label="schemathesis")
        conn.commit()
    env = dict(os.environ, TRANSIT_DATABASE_URL=bench.database_url)
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "transit.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/openapi.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        run = subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "schemathesis"),
                "run",
                url,
                "-H",
                f"X-API-Key: {key}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--include-path-regex",
                "^/api/v1/",
                "--max-examples",
                "15",
                "--seed",
                "20261123",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    finally:
        api.terminate()
        api.wait(10)
    cases = re.search(r"(\d+) generated", run.stdout)
    with capsys.disabled():
        print(
            f"\nschemathesis: {cases.group(0) if cases else '?'} test cases, exit {run.returncode}"
        )
    assert run.returncode == 0, run.stdout[-6000:]
    assert cases is not None and int(cases.group(1)) > 300
