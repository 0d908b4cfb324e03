"""`musika-piano COMMAND --help`: every argument and option says what it is and its default, as
printed (the help is Markdown: text it would swallow, such as `<store>` outside backticks, fails)."""

from __future__ import annotations

import inspect
import io
import re
from collections.abc import Sequence

from cyclopts import App
from cyclopts.argument import Argument
from rich.console import Console

from flows.cli.commands import app
from musika_model.train_config import PRESETS
from tests.flows.cli.test_cli import _commands


def _rows(words: Sequence[str]) -> list[str]:
    """The rows of the panels of `musika-piano WORDS --help`, one line each (a console wide
    enough not to wrap), box and required-marker stripped, whitespace collapsed."""
    buffer = io.StringIO()
    app.meta.help_print(list(words), console=Console(file=buffer, width=2000, color_system=None))
    rows = []
    for line in buffer.getvalue().splitlines():
        if line.startswith("│"):
            rows.append(" ".join(line.strip("│ ").removeprefix("* ").split()))
    return rows


def _shown(command: App) -> list[Argument]:
    """The command's arguments that --help lists, the global options (--store, -v) included."""
    arguments = [*app.meta.assemble_argument_collection(parse_docstring=True),
                 *command.assemble_argument_collection(default_parameter=app.default_parameter, parse_docstring=True)]
    return [argument for argument in arguments if argument.show and argument.parse and not argument.children]


def _has_default(argument: Argument) -> bool:
    """Whether the argument has a default worth printing: not required, not "none given", not a
    switch that is off."""
    default = argument.field_info.default
    return default is not inspect.Parameter.empty and default is not None and default is not False


def test_every_argument_of_every_command_is_described_with_its_default():
    for words, command in _commands(app):
        rows = _rows(words)
        for argument in _shown(command):
            text = argument.parameter.help
            assert text and text.strip(), (words, argument.name)
            [row] = [row for row in rows if row.split()[0] == argument.name]
            printed = " ".join(re.sub(r"`([^`]*)`", r"\1", text).split())  # Markdown code spans print bare
            assert printed in row, (words, argument.name, row)
            if argument.required:
                assert row.endswith("[required]"), (words, row)
            elif _has_default(argument):
                assert f"[default: {argument.field_info.default}]" in row, (words, row)


def test_the_training_presets_help_says_how_long_the_default_trains():
    """The default preset of `train pretrain` trains for days: its help counts the steps from
    the preset table; fine-tuning's default likewise."""
    for command, default in (("pretrain", "piano_pretrain"), ("finetune", "finetune_recordings")):
        config = PRESETS[default]()
        [row] = [row for row in _rows(["train", command]) if row.startswith("--preset ")]
        assert f"[default: {default}]" in row
        assert (f"The default, {default}, runs {config.epochs} epochs of {config.iterations_per_epoch:,} steps "
                f"({config.total_steps:,} steps)") in row
        if default == "piano_pretrain":
            assert "days on a GPU" in row
