"""The pure core imports no IO library: that rule holds by itself, because this checks it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "transit"
PURE = ["model.py", "devices", "geofence", "rules", "ingest/pipeline.py"]
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
    files = []
    for p in PURE:
        target = ROOT / p
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert len(files) >= 8
    offenders = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}
