"""What the README claims beyond its commands, checked against the code: API routes
(`POST /api/v1/...`, `/transits/{mrn}/events`, URLs of the local API, curl lines),
repository paths and links, and settings (`TRANSIT_...`)."""

from __future__ import annotations

import re
import shlex

from tests.readme_commands import ROOT, URL, Command, prose, spans

ROUTE_SPAN = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")


def app_routes() -> list[tuple[str, set[str]]]:
    """Every route of the API (documented or not, WebSocket included) and its methods."""
    from fastapi import routing

    from transit.api.app import create_app

    out = []
    for r in routing.iter_route_contexts(create_app().routes):
        path = getattr(r, "path_format", None) or getattr(r.original_route, "path", "")
        out.append((path, set(getattr(r, "methods", None) or {"GET"})))
    return out


def _matches(doc_path: str, template: str) -> bool:
    """Whether a documented path is the route template's (a `{name}` stands for any)."""
    a, b = doc_path.rstrip("/").split("/"), template.rstrip("/").split("/")
    return len(a) == len(b) and all(x == y or y.startswith("{") for x, y in zip(a, b, strict=True))


def documented_routes(text: str) -> list[tuple[str, str, str]]:
    """(method, path, where) of every route the README names: `METHOD /path` spans,
    bare `/path` spans (under /api/v1 when not found at the root), local URLs, curl."""
    from transit.config import Settings

    port = str(Settings.model_fields["api_port"].default)
    out = []
    for s in spans(text):
        m = ROUTE_SPAN.match(s)
        if m:
            out.append((m.group(1), m.group(2).split("?")[0], f"`{s}`"))
        elif re.match(r"^/[\w{}.-]+(/[\w{}.-]*)*$", s):
            out.append(("ANY", s, f"`{s}`"))
    for m in URL.finditer(text):
        if m.group(2) != port:
            out.append(("PORT", m.group(2), f"{m.group(0)} (the API's port is {port})"))
        else:
            out.append(("GET", (m.group(3) or "/").split("?")[0], m.group(0)))
    return out


def check_routes(text: str, cmds: list[Command]) -> list[str]:
    """Every documented route exists with its method; a curl command's too."""
    routes = app_routes()
    wanted = documented_routes(text)
    for c in cmds:
        words = shlex.split(c.text)
        if words[:1] == ["curl"]:
            method = words[words.index("-X") + 1] if "-X" in words else "GET"
            if "-X" not in words and any(w in words for w in ("-d", "--data", "--json")):
                method = "POST"
            for w in words:
                u = URL.match(w)
                if u:
                    wanted.append((method, (u.group(3) or "/").split("?")[0], c.where))
    problems = []
    for method, path, where in wanted:
        if method == "PORT":
            problems.append(f"{where}: wrong port")
            continue
        candidates = [path]
        if method == "ANY" and not path.startswith("/api/"):
            candidates.append("/api/v1" + path)  # `/transits/{mrn}/events` in the API prose
        found = [(p, ms) for p, ms in routes for c in candidates if _matches(c, p)]
        if method == "ANY" and any(p.startswith(path.rstrip("/") + "/") for p, _ in routes):
            continue  # a prefix (`/api/v1`)
        if not found:
            problems.append(f"{where}: no route {path}")
        elif method != "ANY" and not any(method in ms for _, ms in found):
            problems.append(f"{where}: {path} does not answer {method}")
    return problems


FILE_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")
EXTENSIONS = (".py", ".md", ".sh", ".yml", ".yaml", ".json", ".toml", ".png", ".example")


def check_paths(text: str) -> list[str]:
    """Every repository path in a span and every relative link exists. A name in a
    line that also names a directory (a table row: `transit/api/` ... `web/`) may be
    relative to it. Generated places (.run/, .venv/) are not checked."""
    problems = []
    for line in prose(text).splitlines():
        names = [
            s
            for s in re.findall(r"`([^`\s]+)`", line)
            if FILE_NAME.match(s) and ("/" in s or s.endswith(EXTENSIONS))
        ]
        links = [x for x in re.findall(r"\]\(([^)\s]+)\)", line) if "://" not in x]
        bases = [""] + [n for n in names if n.endswith("/") and (ROOT / n).is_dir()]
        for name in [*names, *(x for x in links if not x.startswith("#"))]:
            if name.startswith((".run/", ".venv/")):
                continue
            if not any((ROOT / base / name).exists() for base in bases):
                problems.append(f"`{name}`: no such file or directory")
    return problems


def check_settings(text: str) -> list[str]:
    """Every TRANSIT_ name the README gives is documented in .env.example and read by
    the settings, the scripts or the Makefile."""
    from transit.config import Settings

    example = (ROOT / ".env.example").read_text()
    used = (ROOT / "Makefile").read_text() + "".join(
        p.read_text() for p in (ROOT / "scripts").glob("*") if p.is_file()
    )
    fields = {f"TRANSIT_{n.upper()}" for n in Settings.model_fields}
    problems = []
    for name in sorted(set(re.findall(r"\bTRANSIT_[A-Z0-9_]+\b", prose(text)))):
        if name not in example:
            problems.append(f"{name}: not in .env.example")
        if name not in fields and name not in used:
            problems.append(f"{name}: no setting reads it")
    return problems
