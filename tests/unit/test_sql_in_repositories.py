"""SQL lives in the repositories (transit/db/), one module per aggregate or feature:
no other module of the package holds a statement. Each rule the SQL shares is written
once: "the alert is open" (transit/db/alerts.py), corridors built from their rows
(transit/db/corridors.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "transit"
REPOSITORIES = ROOT / "db"
SQL = re.compile(
    r"\b(SELECT\s.+|INSERT\s+INTO|UPDATE\s+\w+\s+(\w+\s+)?SET|DELETE\s+FROM|CREATE\s+"
    r"(TEMP\s+|UNIQUE\s+)?(TABLE|INDEX)|DROP\s+TABLE|COPY\s+\w+|TRUNCATE)\b",
    re.S,
)
# The few modules outside the repositories that hold SQL, and why.
EXCEPTIONS = {
    "bench/ingest.py": "its baselines are the SQL being timed (a naive INSERT per message,"
    " psql's \\copy) on scratch tables, and it counts what a run stored",
    "bench/geofence.py": "its baseline is PostGIS's ST_Contains on scratch tables",
    "edge/outbox.py": "the edge reader's own SQLite store-and-forward file on the truck,"
    " not the central database: the module is that store's repository",
}


def _sql_strings(path: Path) -> list[tuple[int, str]]:
    """The string literals (f-string parts included) that read as SQL statements."""
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)
    ]


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_the_check_finds_sql_where_there_is_some() -> None:
    found = _sql_strings(REPOSITORIES / "transits.py")
    assert len(found) >= 5
    assert not SQL.search("Select the transits the caller may see, newest first.")


def test_no_module_outside_the_repositories_holds_sql() -> None:
    offenders = {
        str(p.relative_to(ROOT)): [f"line {n}: {s.strip()[:60]}" for n, s in found]
        for p in _modules()
        if REPOSITORIES not in p.parents and str(p.relative_to(ROOT)) not in EXCEPTIONS
        for found in [_sql_strings(p)]
        if found
    }
    assert offenders == {}


def test_each_exception_still_holds_sql() -> None:
    assert {name: bool(_sql_strings(ROOT / name)) for name in EXCEPTIONS} == dict.fromkeys(
        EXCEPTIONS, True
    )


def test_the_alert_is_open_is_written_once() -> None:
    """Only ``alerts.open_sql`` spells it out (the schema's unique index repeats it)."""
    spelled = {
        str(p.relative_to(ROOT))
        for p in _modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.search(r"status\s*<>\s*'resolved'", node.value)
    }
    assert spelled == {"db/alerts.py"}
    source = (REPOSITORIES / "alerts.py").read_text()
    assert source.count("<> 'resolved'") == 1


def test_corridors_are_built_from_rows_in_one_place() -> None:
    """Outside the geofence (which defines it), only the corridors' repository builds a
    corridor, and the geofence bench its synthetic variants."""
    callers = {
        str(p.relative_to(ROOT))
        for p in _modules()
        if "geofence" not in p.relative_to(ROOT).parts
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "build_corridor"
    }
    assert callers == {"db/corridors.py", "bench/geofence.py"}
