"""The pure core imports no IO library: that rule holds by itself, because this checks it.

Two checks: no pure file names an IO library (the direct imports), and no pure module
loads one by any path (a subprocess where those libraries cannot be imported at all
imports each pure module in turn: a chain such as pipeline -> store -> psycopg fails)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "transit"
PURE = [
    "model.py",
    "lifecycle.py",
    "devices",
    "geofence",
    "rules",
    "risk",
    "ingest/pipeline.py",
    "ingest/journey.py",
    "ingest/sequencing.py",
    "ingest/types.py",
]
FORBIDDEN = {
    "paho",
    "psycopg",
    "psycopg_pool",
    "serial",
    "fastapi",
    "uvicorn",
    "socket",
    "requests",
    "httpx",
    "subprocess",
}
# What may not be loaded at all, by any chain of imports (socket and subprocess are
# stdlib modules that numpy, shapely or pydantic load themselves: named, not loaded).
IO_LIBRARIES = {
    "paho",
    "psycopg",
    "psycopg_pool",
    "serial",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "requests",
    "websockets",
    "prometheus_client",
    "sqlite3",
}

# Run in a fresh interpreter: a finder ahead of every other one refuses the IO
# libraries, naming the transit files whose imports led there.
_PROBE = """
import importlib, json, sys, traceback

blocked, modules = set(sys.argv[1].split(",")), sys.argv[2:]

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in blocked:
            return None
        chain = [f.filename for f in traceback.extract_stack() if "/transit/" in f.filename]
        short = [c[c.rindex("/transit/") + 1 :] for c in dict.fromkeys(chain)]
        raise ImportError(" -> ".join([*short, name]))

sys.meta_path.insert(0, Refuse())
failed = {}
for module in modules:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        failed[module] = str(exc)
loaded = sorted({m.partition(".")[0] for m in sys.modules} & blocked)
print(json.dumps({"failed": failed, "loaded": loaded}))
"""


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for p in PURE:
        target = ROOT / p
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return files


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _probe(modules: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(sorted(IO_LIBRARIES)), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT.parent,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pure_core_imports_no_io_library() -> None:
    files = _pure_files()
    assert len(files) >= 8
    offenders = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_pure_module_loads_an_io_library_by_any_chain_of_imports() -> None:
    modules = [_module(f) for f in _pure_files()]
    assert "transit.ingest.pipeline" in modules and "transit.lifecycle" in modules
    seen = _probe(modules)
    assert seen == {"failed": {}, "loaded": []}


def test_the_import_probe_sees_an_io_library_behind_a_chain() -> None:
    # A module that is not pure, imported by way of another, is caught with its chain.
    seen = _probe(["transit.ingest.storage"])
    failed = seen["failed"]
    assert isinstance(failed, dict)
    chain = failed["transit.ingest.storage"]
    assert chain.startswith("transit/ingest/storage.py -> ")
    assert chain.endswith("psycopg")
    assert seen["loaded"] == []
