"""Every command's ``--help`` as a person reads it, at 80 and 120 columns."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from oldphoto.cli import app


def _commands() -> list[list[str]]:
    """Every command path: ``[]`` (the root), ``["restore"]``, ``["weights", "list"]``..."""
    found: list[list[str]] = []

    def walk(command, path: list[str]) -> None:  # noqa: ANN001 - a click command or group
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


COMMANDS = _commands()


def _help(path: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "restore", "info", "degrade", "train", "ui", "weights", "weights list", "weights download",
            "weights verify", "weights path", "weights import-official"} <= names


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "oldphoto")
def test_help_reads_as_written(path: list[str], columns: int) -> None:
    text = _help(path, columns)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= columns, text  # nothing wraps in the terminal
    assert "<bool>" not in text and "list[" not in text, text  # flags take no value; no Python types
    usage = lines[0]
    assert usage.startswith("Usage: ") and "{" not in usage and "}" not in usage, usage
    # No line of a command list is cut short with "...", and no word is split at a hyphen.
    assert not [line for line in lines if line.rstrip().endswith("...") and not line.rstrip().endswith("]...")], text
    assert not [line for line in lines if re.search(r"\w-$", line.rstrip())], text


@pytest.mark.parametrize(
    ("path", "usage"),
    [
        (["restore"], "Usage: oldphoto restore [OPTIONS] IN OUT"),
        (["degrade"], "Usage: oldphoto degrade [OPTIONS] IN OUT"),
        (["train"], "Usage: oldphoto train [OPTIONS] [STAGE]"),  # optional: a --config file may name it
        (["weights", "download"], "Usage: oldphoto weights download [OPTIONS] [MODEL]..."),
        (["weights", "path"], "Usage: oldphoto weights path [OPTIONS] [MODEL]"),
        (["weights", "import-official"], "Usage: oldphoto weights import-official [OPTIONS] CHECKPOINTS DEST"),
    ],
)
def test_usage_names_the_arguments(path: list[str], usage: str) -> None:
    text = _help(path, 80)
    assert text.splitlines()[0] == usage
    name = usage.split()[-1].strip("[].")
    assert re.search(rf"^  \[?{name}\b", text, re.M), text  # the argument list uses the same name


def test_restore_help_names_the_extras_and_flags_take_no_value() -> None:
    text = " ".join(_help(["restore"], 80).split())  # joined across the wrapped lines
    assert "(needs the faces extra, oldphoto[faces])" in text
    assert "needs the ray extra, oldphoto[ray])" in text
    assert "-r, --recursive Also restore photos" in text
    assert "--faces / --no-faces Enhance faces" in text
    assert "--mode <str> auto, quality" in text


def test_a_missing_argument_is_named_as_in_the_help(tmp_path) -> None:  # noqa: ANN001
    result = CliRunner().invoke(app, ["restore", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 2 and "Missing argument 'OUT'" in result.output
