"""The README's commands, extracted and checked against the code: shell examples
(fenced blocks tagged sh/bash/shell/console, or untagged ones that start with a
command) and inline code spans that are commands (`transit ...`, a bare subcommand
of the `transit --help` list, `make ...`, `python -m ...`, `curl ...`). Routes, paths
and settings are in tests/readme_claims.py.

Each ``check_*`` function returns the problems it finds in a text, one line each, so
the tests run them on the README and on false lines made to fail them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from transit.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SHELL_TAGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*(?:[.:][A-Za-z0-9_]+)*$")
URL = re.compile(r"https?://(127\.0\.0\.1|localhost):(\d+)(/[^\s`)\"']*[^\s`)\"'.,;:])?")
BUILTINS = {"cd", "export", "source", ".", "echo", "set"}


@dataclass(frozen=True)
class Command:
    """A command the README shows, where it shows it, whether it is a name in a list
    (a bare subcommand span) and whether it is a line of a shell block (to be typed)."""

    text: str
    where: str
    listed: bool = False
    shell: bool = False


def prose(text: str) -> str:
    """The text without its fenced blocks."""
    return FENCE.sub("", text)


def shell_lines(text: str) -> list[Command]:
    """The command lines of the shell blocks, continuation lines joined, comments and
    prompts removed."""
    out = []
    for m in FENCE.finditer(text):
        tag, body = m.group(1).strip().lower(), m.group(2)
        first = body.strip().split(None, 1)[0] if body.strip() else ""
        if tag == "" and first == "$":
            tag = "console"  # a session: `$ ` prompts, then what the command printed
        if tag not in SHELL_TAGS and not (tag == "" and _is_command_word(first)):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if tag == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            line = line.removeprefix("$ ")
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                out.append(Command(line, f"shell block: {line}", shell=True))
    return out


def spans(text: str) -> list[str]:
    """The inline code spans outside fenced blocks, whitespace collapsed."""
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose(text))]


def _subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def _is_command_word(word: str) -> bool:
    return word in {"transit", "make", "python", "python3", "curl", "sudo"} or word.endswith(
        "/python"
    )


def span_commands(text: str) -> list[Command]:
    """Spans that are commands. A bare subcommand (`doctor [--json]`) is `transit` with
    it; a bare flag (`--fast`) belongs to the command span before it."""
    subs = _subcommands()
    out: list[Command] = []
    base = ""
    for s in spans(text):
        words = s.split()
        if not words:
            continue
        if words[0] == "transit" or (words[0] in {"make", "curl"} and len(words) > 1):
            out.append(Command(s, f"`{s}`"))
            if words[0] == "transit":
                base = " ".join(w for w in itertools.takewhile(is_word, words))
        elif re.match(r"^(\S*/)?python3? -m \S", s):
            out.append(Command(s, f"`{s}`"))
        elif words[0] in subs:
            out.append(Command(f"transit {s}", f"`{s}`", listed=True))
            base = "transit " + " ".join(w for w in itertools.takewhile(is_word, words))
        elif words[0].startswith("--") and base:
            out.append(Command(f"{base} {s}", f"`{s}` (after `{base}`)", listed=True))
    return out


def _without_env(words: list[str]) -> list[str]:
    """The words after any leading ``NAME=value`` assignments."""
    return list(itertools.dropwhile(lambda w: re.match(r"^[A-Z_][A-Z0-9_]*=", w), words))


def is_word(w: str) -> bool:
    """Whether a word can be a subcommand's name (not a flag, value or metavariable)."""
    return bool(re.match(r"^[a-z][a-z0-9-]*$", w))


def expand(synopsis: str) -> list[list[str]]:
    """The concrete word lists a synopsis stands for: ``[a | b]`` is nothing, a or b;
    ``x|y`` is x or y; ``...`` is dropped."""
    m = re.search(r"\[([^\[\]]*)\]", synopsis)
    if m:
        options = ["", *[o.strip() for o in m.group(1).split(" | ")]]
        return [
            w
            for o in options
            for w in expand(synopsis[: m.start()] + " " + o + " " + synopsis[m.end() :])
        ]
    words = [w for w in synopsis.split() if w != "..."]
    return [list(p) for p in itertools.product(*[w.split("|") if "|" in w else [w] for w in words])]


def _value_for(action: argparse.Action, token: str) -> str:
    """``token``, or a value the action accepts when it is a metavariable (ROLE, N)."""
    if not METAVAR.match(token):
        return token
    if action.choices is not None and token not in action.choices:
        return str(next(iter(action.choices)))
    if action.type in (int, float):
        return "1"
    return token


def concretise(words: list[str]) -> list[str]:
    """The argv a synopsis's words make, metavariables given acceptable values."""
    parser: argparse.ArgumentParser = build_parser()
    positionals = [a for a in parser._actions if not a.option_strings]
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w.startswith("-"):
            out.append(w)
            act = parser._option_string_actions.get(w.split("=", 1)[0])
            if act is not None and act.nargs is None and "=" not in w and i < len(words):
                out.append(_value_for(act, words[i]))
                i += 1
            continue
        if not positionals:
            out.append(w)
            continue
        act = positionals[0]
        if isinstance(act, argparse._SubParsersAction):
            out.append(w)
            if w not in act.choices:
                break
            parser = act.choices[w]
            positionals = [a for a in parser._actions if not a.option_strings]
            continue
        out.append(_value_for(act, w))
        if act.nargs not in ("*", "+"):
            positionals.pop(0)
    return out + words[i:]


def parse_error(argv: list[str]) -> tuple[int, str]:
    """Parse ``argv`` with the CLI's own parser: (0, '') when it parses, otherwise the
    exit code and what argparse said."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue().strip()
    return 0, ""


def check_transit(cmds: list[Command]) -> list[str]:
    """Every `transit` command parses with its documented flags; a subcommand named in a
    list may leave out its required arguments."""
    problems = []
    for c in cmds:
        words = _without_env(c.text.split())
        if words[:1] != ["transit"]:
            continue
        for variant in expand(" ".join(words[1:])):
            code, msg = parse_error(concretise(variant))
            # A name in a list or in prose (`keys create`, `transit edge`) may leave out
            # required arguments; a synopsis with flags or arguments, or a line of a
            # shell block, must be complete.
            named = c.listed or (not c.shell and all(is_word(w) for w in variant))
            if code and not (named and "arguments are required" in msg):
                problems.append(f"{c.where}: `transit {' '.join(variant)}`: {msg}")
    return problems


def command_paths(cmds: list[Command]) -> set[tuple[str, ...]]:
    """The subcommand paths (``("bench", "map")``) the commands use."""
    paths = set()
    for c in cmds:
        words = _without_env(c.text.split())
        if words[:1] != ["transit"]:
            continue
        for variant in expand(" ".join(words[1:])):
            path = tuple(itertools.takewhile(is_word, variant))
            if path and parse_error([*path, "--help"])[0] == 0:
                paths.add(path)
    return paths


def makefile_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    text = makefile.read_text()
    return {t for line in re.findall(r"^([\w.-][\w. -]*):(?!=)", text, re.M) for t in line.split()}


def recipe(target: str, makefile: Path = ROOT / "Makefile") -> list[str]:
    """The recipe lines of a Makefile target, without their ``@``/``-`` prefixes."""
    lines = makefile.read_text().splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(target)}:(?!=)", line):
            for body in itertools.takewhile(lambda x: x.startswith("\t"), lines[i + 1 :]):
                out.append(body.strip().lstrip("@-"))
    return out


def check_make(cmds: list[Command], makefile: Path = ROOT / "Makefile") -> list[str]:
    """Every `make TARGET` names a target of the Makefile; the `transit` commands of its
    recipe parse, and the scripts it runs exist."""
    targets = makefile_targets(makefile)
    problems = []
    for c in cmds:
        words = shlex.split(c.text)
        if words[:1] == ["sudo"]:
            words = words[1:]
        if words[:1] != ["make"]:
            continue
        for t in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
            if t not in targets:
                problems.append(f"{c.where}: no target `{t}` in the Makefile")
            for line in recipe(t, makefile):
                m = re.match(r"^\S*bin/transit( .*)?$", line)
                if m:
                    code, msg = parse_error(shlex.split(m.group(1) or ""))
                    if code:
                        problems.append(f"{c.where}: the recipe's `{line}`: {msg}")
                for script in re.findall(r"\b(?:bash|sh) (\S+\.sh)\b", line):
                    if not (ROOT / script).is_file():
                        problems.append(f"{c.where}: the recipe runs {script}, which is missing")
    return problems


def check_python(cmds: list[Command]) -> list[str]:
    """Every `python -m MODULE` names a module; an argparse one accepts the flags shown
    (its --help lists them)."""
    import subprocess
    import sys

    problems = []
    for c in cmds:
        m = re.match(r"^(?:\S*/)?python3? -m (\S+)(.*)$", c.text)
        if not m:
            continue
        module, rest = m.group(1), m.group(2).split()
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            problems.append(f"{c.where}: no module {module}")
            continue
        if "argparse" not in Path(spec.origin).read_text():
            continue
        helped = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        for flag in (w for w in rest if w.startswith("--")):
            if flag.split("=")[0] not in helped.stdout:
                problems.append(f"{c.where}: {module} has no flag {flag}")
    return problems


def check_shell_words(cmds: list[Command]) -> list[str]:
    """A shell line runs something that exists: a command this module checks, a shell
    builtin, or a program on PATH."""
    problems = []
    for c in cmds:
        words = _without_env(shlex.split(c.text))
        if not words:
            continue
        first = words[1] if words[0] == "sudo" and len(words) > 1 else words[0]
        known = _is_command_word(first) or first in BUILTINS or first.startswith(".venv/")
        if not known and shutil.which(first) is None:
            problems.append(f"{c.where}: no program {first}")
    return problems


def all_commands(text: str) -> list[Command]:
    """The shell lines and the command spans of a text."""
    return [*shell_lines(text), *span_commands(text)]
