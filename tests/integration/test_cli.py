import json
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transit.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_subcommand() -> None:
    out = _run("--help").stdout
    for cmd in ("db", "broker", "doctor", "ingest", "api", "openapi", "geo", "sim", "nmea", "demo"):
        assert f"    {cmd}" in out


def test_doctor_reports_timescaledb_hypertables_and_broker_healthy() -> None:
    proc = _run("doctor", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
    assert report["database"]["timescaledb"]["installed"]
    assert report["database"]["timescaledb"]["edition"] in ("apache", "timescale")
    assert {"fixes", "seal_events"} <= set(report["database"]["hypertables"])
    assert report["database"]["migrations"]["pending"] == 0
    assert report["broker"]["ok"]


def test_doctor_fails_when_the_broker_rejects_the_credentials() -> None:
    import os

    env = {**os.environ, "TRANSIT_MQTT_INGEST_PASSWORD": "wrong"}
    proc = subprocess.run(
        [sys.executable, "-m", "transit.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["broker"]["ok"] is False


def test_openapi_prints_the_document_without_a_server() -> None:
    doc = json.loads(_run("openapi").stdout)
    assert "/api/v1/transits/{mrn}/track" in doc["paths"]


def test_geo_export_then_import_round_trips(tmp_path) -> None:
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[2] / "transit/geofence/data/acts.geojson"
    assert _run("geo", "import", str(bundled)).returncode == 0
    out = _run("geo", "export")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    ids = {f["id"] for f in doc["features"]}
    assert {"SG-MY-KUL", "MY-TH-BKK", "TH-LA-VTE", "MYBKH001"} <= ids
    path = tmp_path / "network.geojson"
    path.write_text(out.stdout)
    back = _run("geo", "import", str(path))
    assert back.returncode == 0, back.stderr
    assert json.loads(_run("geo", "export").stdout) == doc


def test_risk_train_refuses_too_few_labelled_transits_naming_the_counts() -> None:
    proc = _run("risk", "train", "--min-each", "1000000")
    assert proc.returncode == 2
    assert "training needs at least 1000000 finished transits" in proc.stderr
    assert "there are" in proc.stderr


def test_an_unreachable_database_is_said_in_one_line_not_a_traceback() -> None:
    import os

    env = {**os.environ, "TRANSIT_DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"}
    proc = subprocess.run(
        [sys.executable, "-m", "transit.cli", "risk", "train"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("transit: error: the database is unreachable")
    assert "Traceback" not in proc.stderr
