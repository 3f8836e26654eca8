"""The README tells the truth. Its shell examples and inline commands are extracted
(tests/readme_commands.py) and checked: every `transit` command parses with its
documented flags under the CLI's own parser and every subcommand prints its help;
those safe to run (read-only and quick) are run; `make` targets exist in the
Makefile; modules, routes, paths and settings exist; and a device's MQTT password is
what the README says it is. Nothing is listed by hand: a command added to the README
is checked by being there."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time

import pytest

from tests import readme_claims as claims
from tests import readme_commands as rc
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
COMMANDS = rc.all_commands(README)
# Run as written: they only read, and end in seconds. Any documented `... list` or
# `... export` is run as well.
SAFE_TO_RUN = {(), ("openapi",), ("doctor",)}
READ_ONLY_VERBS = {"list", "export"}


def _transit(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transit.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_readme_shows_its_commands() -> None:
    """The extraction finds the quickstart and the command list (else nothing is checked)."""
    texts = {c.text for c in COMMANDS}
    assert {"make demo", "make test", "transit --help", "transit openapi"} <= texts
    assert len([c for c in COMMANDS if c.text.startswith("transit ")]) >= 20


def test_every_transit_command_in_the_readme_parses_with_its_documented_flags() -> None:
    assert rc.check_transit(COMMANDS) == []


def test_every_documented_subcommand_prints_its_help() -> None:
    paths = rc.command_paths(COMMANDS)
    assert ("devices", "register") in paths
    for path in sorted(paths):
        assert rc.parse_error([*path, "--help"])[0] == 0, path


def _runnable() -> list[list[str]]:
    """The documented variants safe to run: no metavariable left, a read-only path."""
    out = []
    for c in COMMANDS:
        words = c.text.split()
        if words[0] != "transit":
            continue
        for variant in rc.expand(" ".join(words[1:])):
            path = tuple(w for w in variant if rc.is_word(w))
            if any(rc.METAVAR.match(w) for w in variant):
                continue
            if "--cluster" in variant:  # needs the cluster up: tests/e2e/test_demo_cluster.py
                continue
            safe = path in SAFE_TO_RUN or (path and path[-1] in READ_ONLY_VERBS)
            if safe and variant not in out:
                out.append(variant)
    return out


def test_the_commands_safe_to_run_run_as_written() -> None:
    runnable = _runnable()
    assert ["--help"] in runnable and ["openapi"] in runnable and ["doctor", "--json"] in runnable
    failed = {}
    for argv in runnable:
        proc = _transit(*argv)
        if proc.returncode != 0:
            failed[" ".join(argv)] = proc.stderr[-500:] or proc.stdout[-500:]
        elif "--json" in argv or argv == ["openapi"]:
            json.loads(proc.stdout)
    assert failed == {}


def test_transit_help_lists_every_subcommand_the_readme_names() -> None:
    out = _transit("--help").stdout
    for path in rc.command_paths(COMMANDS):
        assert re.search(rf"^\s+{re.escape(path[0])}\s", out, re.M), path[0]


def test_every_make_target_in_the_readme_exists() -> None:
    assert rc.check_make(COMMANDS) == []


def test_a_make_target_whose_recipe_is_false_is_found(tmp_path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "demo: setup\n\t@$(VENV)/bin/transit demo --no-such-flag\n\t@bash scripts/no-such.sh\n"
    )
    problems = rc.check_make(rc.all_commands("`make demo`"), makefile)
    assert len(problems) == 2
    assert "--no-such-flag" in problems[0] and "scripts/no-such.sh" in problems[1]


def test_every_python_module_in_the_readme_exists_with_its_flags() -> None:
    assert rc.check_python(COMMANDS) == []


def test_every_route_and_url_in_the_readme_exists() -> None:
    assert claims.check_routes(README, COMMANDS) == []


def test_every_path_in_the_readme_exists() -> None:
    assert claims.check_paths(README) == []


def test_every_setting_in_the_readme_is_documented_and_read() -> None:
    assert claims.check_settings(README) == []


def test_every_shell_line_in_the_readme_runs_a_program_that_exists() -> None:
    assert rc.check_shell_words(COMMANDS) == []


def _problems(text: str) -> list[str]:
    """Every problem the static checks find in a text (nothing is run but --help)."""
    cmds = rc.all_commands(text)
    return [
        *rc.check_transit(cmds),
        *rc.check_make(cmds),
        *rc.check_python(cmds),
        *claims.check_routes(text, cmds),
        *claims.check_paths(text),
        *claims.check_settings(text),
        *rc.check_shell_words(cmds),
    ]


@pytest.mark.parametrize(
    "false_line",
    [
        "`transit devices register ID --no-such-flag`",
        "`keys create --role wizard`",
        "`transit ingest --workers many`",
        "`doctor [--yaml]`",
        "`transit frobnicate`",
        "`sim` (with `--warp`)",
        "```\nmake demo\nmake no-such-target\n```",
        "`make no-such-target`",
        "`python -m transit.no_such_module`",
        "`transit bench fuzz-eseal --no-such-flag 3`",
        "`GET /api/v1/no-such-route`",
        "`DELETE /api/v1/transits`",
        "Open http://127.0.0.1:8470/no-such-page now.",
        "Open http://127.0.0.1:9999/map now.",
        "```sh\ncurl -X DELETE http://127.0.0.1:8470/api/v1/transits\n```",
        "| `transit/no_such.py` | nothing |",
        "![a picture](docs/no-such.png)",
        "`TRANSIT_NO_SUCH_SETTING`",
        "```sh\nno-such-program --now\n```",
        "```sh\nTRANSIT_API_PORT=8471 transit keys create\n```",
        "```\n$ transit doctor --yaml\ndatabase: ok\n```",
    ],
)
def test_the_checks_find_a_false_line(false_line: str) -> None:
    assert _problems(false_line) != []


def _broker_accepts(settings, user: str, password: str) -> bool:
    from transit.mqtt import make_client

    result: dict[str, object] = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason, properties) -> None:
        result["reason"] = reason
        done.set()

    client = make_client(settings, user, password)
    client.on_connect = on_connect
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()
    return not result["reason"].is_failure  # type: ignore[attr-defined]


def test_a_device_password_is_as_the_readme_says(settings) -> None:
    """`transit devices register` prints the password the README describes, and the
    broker takes it."""
    said = re.search(
        r"MQTT password is the first (\d+) hex digits of HMAC-SHA256\(secret, device id\),"
        r" as `transit devices register ID` prints it",
        " ".join(README.split()),
    )
    assert said, "the README no longer says how a device's MQTT password is made"
    device = "README-PW-1"
    proc = _transit("devices", "register", device)
    assert proc.returncode == 0, proc.stderr
    printed = re.search(r"^mqtt password: (\S+)$", proc.stdout, re.M)
    assert printed, proc.stdout
    mac = hmac.new(settings.device_secret.encode(), device.encode(), hashlib.sha256)
    assert printed.group(1) == mac.hexdigest()[: int(said.group(1))]
    # The broker re-reads its password file on SIGHUP: try until it has.
    deadline = time.monotonic() + 10
    accepted = _broker_accepts(settings, device, printed.group(1))
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.2)
        accepted = _broker_accepts(settings, device, printed.group(1))
    assert accepted
    assert not _broker_accepts(settings, device, mac.hexdigest())  # the whole HMAC is not it
