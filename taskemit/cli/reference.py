"""The command line reference, docs/cli.md, generated from the click commands themselves.

Regenerate it after adding or changing a command or an option::

    python -m taskemit.cli.reference > docs/cli.md

``tests/test_cli_reference.py`` fails while docs/cli.md differs from what this prints.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator

import click

__all__ = ("REGENERATE", "render")

REGENERATE = "python -m taskemit.cli.reference > docs/cli.md"

_HEADER = f"""\
# Command line reference

<!-- Generated from the commands by `{REGENERATE}`: do not edit by hand. -->

Every command of `taskemit`, with its usage, what it does and its options, as
`taskemit COMMAND --help` prints them. Every command also takes `-h`/`--help`. Options of
`taskemit` itself go before the command: `taskemit --namespace shop cron list`. The exit codes
are listed under [`taskemit`](#taskemit); [Monitoring](monitoring.md) and [Cron](cron.md) show
the commands at work.
"""


def _contexts(command: click.Command, name: str, parent: click.Context | None = None) -> Iterator[click.Context]:
    """A context for ``command`` and for each of its subcommands, depth first, in name order."""
    ctx = click.Context(command, info_name=name, parent=parent)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from _contexts(sub, sub_name, ctx)


def _help(command: click.Command) -> str:
    """The command's help as Markdown paragraphs (click's ``\\b`` markers dropped, ``\\f`` honoured)."""
    text = inspect.cleandoc(command.help or "").split("\f")[0]
    lines = [line for line in text.splitlines() if line.strip() != "\b"]
    return "\n".join(lines).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _option(param: click.Option, declaration: str) -> str:
    """``-p, --processes INTEGER RANGE`` as a table cell: the names as code, the value's kind as text."""
    end = max(declaration.rfind(opt) + len(opt) for opt in [*param.opts, *param.secondary_opts])
    names, kind = declaration[:end], declaration[end:].strip()
    return f"`{names}`" + (f" {_cell(kind)}" if kind else "")


def _section(ctx: click.Context) -> list[str]:
    command = ctx.command
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"## `{ctx.command_path}`", "", "```text", usage, "```", ""]
    help_text = _help(command)
    if help_text:
        lines += [help_text, ""]
    rows = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or "--help" in param.opts:
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            rows.append(f"| {_option(param, record[0])} | {_cell(record[1])} |")
    if rows:
        lines += ["| option | meaning |", "| --- | --- |", *rows, ""]
    if isinstance(command, click.Group):
        commands = [
            name for name in command.list_commands(ctx) if not getattr(command.get_command(ctx, name), "hidden", True)
        ]
        links = ", ".join(f"[`{name}`](#{_anchor(f'{ctx.command_path} {name}')})" for name in commands)
        lines += [f"Commands: {links}.", ""]
    return lines


def _anchor(title: str) -> str:
    """The id Python-Markdown's toc extension gives a heading ``title``."""
    return "-".join("".join(c for c in title.lower() if c.isalnum() or c in " -_").split())


def render(root: click.Command | None = None, name: str = "taskemit") -> str:
    """The reference of ``root`` (default: the ``taskemit`` command) as Markdown."""
    if root is None:
        from . import cli

        root = cli
    lines = [_HEADER]
    for ctx in _contexts(root, name):
        lines += _section(ctx)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
