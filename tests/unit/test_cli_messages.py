"""Every flag a message names is one the command takes: a message blamed a `--no-cutouts` flag nobody passed, and
a hint naming a flag that does not exist sends the reader to `--help` for nothing.

The test walks the real command tree (typer's click commands) and every string of the code that reads as prose
(it has a space: an argv list's "--backend-store-uri" for a subprocess is not a message). A flag after
"skysift <command>" in the same string must belong to that command; any other must belong to some command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

from skysift.cli import app

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*(ROOT / "services" / "skysift").rglob("*.py"), *(ROOT / "streamlit_app").rglob("*.py")]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
INVOCATION = re.compile(r"skysift((?: [a-z][a-z-]*)+)((?: [^`'\"\n]*)?)")


def commands() -> dict[tuple[str, ...], set[str]]:
    """Each command's path (('label', 'export')) -> its flags, secondary ones (--no-cutouts) and --help included."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(command, path: tuple[str, ...]) -> None:
        found[path] = {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        found[path].add("--help")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def messages() -> list[tuple[str, str]]:
    """(where, text) of every string constant with a space in it, f-string pieces included."""
    found = []
    for source in SOURCES:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value.strip():
                found.append((f"{source.relative_to(ROOT)}:{node.lineno}", node.value))
    return found


def invoked(text: str, known: dict[tuple[str, ...], set[str]]) -> list[tuple[tuple[str, ...], str]]:
    """(command path, flag) for each flag written after `skysift <command>` in ``text``."""
    pairs = []
    for words, rest in INVOCATION.findall(text):
        path = tuple(words.split())
        while path and path not in known:  # "skysift round --force": the words after the command are not part of it
            path = path[:-1]
        pairs += [(path, flag) for flag in FLAG.findall(rest)]
    return pairs


def test_every_flag_a_message_names_is_a_real_option():
    known = commands()
    every_flag = set().union(*known.values())
    wrong = [f"{where}: {flag}" for where, text in messages() for flag in FLAG.findall(text) if flag not in every_flag]
    assert not wrong, "messages name flags no command has:\n" + "\n".join(wrong)


def test_a_flag_written_after_a_command_is_that_commands_flag():
    known = commands()
    wrong = [f"{where}: skysift {' '.join(path)} {flag}" for where, text in messages()
             for path, flag in invoked(text, known) if path and flag not in known[path]]
    assert not wrong, "messages give a command a flag it does not take:\n" + "\n".join(wrong)


def test_the_walk_finds_the_commands_and_the_messages_it_checks():
    known = commands()
    assert "--force" in known[("round",)] and "--no-cutouts" in known[("poll",)]
    assert invoked("run `skysift label export --every-event` now", known) == [(("label", "export"), "--every-event")]
    assert invoked("then `skysift round --force`", known) == [(("round",), "--force")]
    assert any("without --force" in text for _, text in messages())  # the dataset verdict, a message in an f-string
