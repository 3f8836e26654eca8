"""One composition root: transit/bootstrap.py builds the adapters, nothing else does.

The processes (ingest worker, API, dead-letter replay, benchmarks) are given their MQTT
client, rule pipeline and border file by :mod:`transit.bootstrap`; a test wires its own
parts by passing them there."""

from __future__ import annotations

import ast
from pathlib import Path

from transit import bootstrap
from transit.config import Settings
from transit.ingest.worker import WorkerConfig
from transit.mqtt import make_client
from transit.rules.filters import FixFilters

ROOT = Path(__file__).resolve().parents[2] / "transit"
# Built only by the composition root: the calls below, anywhere else in transit/.
ROOT_ONLY = {"IngestWorker", "AmqpIngestWorker", "create_app", "Pipeline", "load"}


def _calls(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            is_borders = isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "borders"
            if name == "load" and not is_borders:  # only the border file's borders.load(...)
                continue
            if name in ROOT_ONLY:
                found.append((name, node.lineno))
    return found


def test_only_the_composition_root_builds_workers_apps_pipelines_and_borders() -> None:
    elsewhere = [
        f"{p.relative_to(ROOT.parent)}:{line} builds {name}"
        for p in sorted(ROOT.rglob("*.py"))
        if p.name != "bootstrap.py" and p.parent.name != "tests"
        for name, line in _calls(p)
        # the constructors themselves and the module that defines them
        if not (p.name == "pipeline.py" and name == "Pipeline")
    ]
    assert elsewhere == []


def test_the_probe_finds_a_worker_built_outside_the_root(tmp_path: Path) -> None:
    stray = tmp_path / "stray.py"
    stray.write_text("from transit.ingest.worker import IngestWorker\nw = IngestWorker(s, c)\n")
    assert _calls(stray) == [("IngestWorker", 2)]


def test_the_settings_filter_bounds_reach_the_worker_and_a_replay(settings: Settings) -> None:
    tight = settings.model_copy(
        update={"filter_future_s": 7.0, "filter_stale_s": 11.0, "filter_max_hdop": 2.5}
    )
    worker = bootstrap.ingest_worker(tight, WorkerConfig(client_id="transit-root-test"))
    assert worker.pipeline.filters == FixFilters(7.0, 11.0, 2.5)
    assert bootstrap.pipeline(tight).filters == FixFilters(7.0, 11.0, 2.5)
    # The watchdog evaluates with the same pipeline as the batches.
    assert worker.watchdog.pipeline is worker.pipeline


def test_a_test_wires_its_own_parts(settings: Settings) -> None:
    client = make_client(
        settings, settings.mqtt_ingest_user, settings.mqtt_ingest_password, client_id="own"
    )
    rules = bootstrap.pipeline(settings, FixFilters(max_hdop=1.0))
    worker = bootstrap.ingest_worker(
        settings, WorkerConfig(client_id="own"), client=client, rules=rules, borders=None
    )
    assert worker.client is client and worker.pipeline is rules
    assert worker.pipeline.filters.max_hdop == 1.0
