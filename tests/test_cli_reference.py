"""docs/cli.md is generated from the commands (taskemit/cli/reference.py), and says what they do now."""

from __future__ import annotations

from pathlib import Path

import click

from taskemit.cli import cli
from taskemit.cli.reference import REGENERATE, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date_with_the_commands() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        f"docs/cli.md is out of date with the commands; regenerate it: {REGENERATE}"
    )


def test_the_reference_shows_every_command_and_option() -> None:
    text = render()

    def check(command: click.Command, path: str) -> int:
        assert f"## `{path}`\n" in text, f"{path} is missing"
        ctx = click.Context(command, info_name=path.rsplit(" ", 1)[-1])
        section = text.split(f"## `{path}`\n", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    assert opt in section, f"{path}: {opt} is missing"
                assert (param.help or "") in section, f"{path}: the help of {param.opts} is missing"
        seen = 1
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                seen += check(sub, f"{path} {name}")
        return seen

    commands = check(cli, "taskemit")
    assert commands == text.count("\n## ") and commands > 20
