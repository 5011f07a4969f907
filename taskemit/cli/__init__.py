"""The ``taskemit`` command: the group of ``group.py`` and ``demo``, which runs Litestar's events
example (it imports Litestar, which hands the group's commands to ``litestar taskemit``)."""

from __future__ import annotations

import sys

import click

from .group import cli, main

__all__ = ("cli", "main")


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's keys in Redis (deleted at the end by default).")
def demo(keep: bool) -> None:
    """Run Litestar's events example end to end and print what happened to each event."""
    try:
        import litestar  # noqa: F401
    except ImportError:
        raise click.ClickException("the demo needs Litestar: pip install 'taskemit[demo]'") from None
    from ..demo.run import run_demo

    sys.exit(run_demo(keep=keep))
