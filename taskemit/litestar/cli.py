"""``litestar taskemit ...``: the ``taskemit`` command's own commands, on the app's settings.

The group holds the very command objects of ``taskemit.cli.group`` (the one import against the
layers' grain, allowed in pyproject.toml; that module imports nothing that imports Litestar).
Before a command runs, the plugin's settings are put into the environment as ``TASKEMIT_*``,
which is where every command reads them from; ``--redis-url`` and ``--namespace`` still win.
With no ``listeners`` setting, ``worker`` runs the listeners (and cron schedules) of the
modules the app's listeners come from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import click
from pydantic_settings import NoDecode

from ..emit import Registry
from ..settings import Settings

__all__ = ("settings_environment", "taskemit_group")


def settings_environment(settings: Settings) -> dict[str, str]:
    """``TASKEMIT_*`` variables that make ``load_settings()`` give ``settings`` (those not at their default)."""
    env = {}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value == info.get_default(call_default_factory=True):
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        elif any(isinstance(meta, NoDecode) or meta is NoDecode for meta in info.metadata):
            text = ",".join(value)
        else:
            text = json.dumps(value)
        env[f"TASKEMIT_{name.upper()}"] = text
    return env


def _listener_modules(listeners: Iterable[Any]) -> list[str]:
    modules = {getattr(item.fn, "__module__", None) for item in Registry(listeners)}
    return sorted(m for m in modules if m and m != "__main__")


def taskemit_group(settings: Settings, listeners: Iterable[Any]) -> click.Group:
    """A ``taskemit`` group for Litestar's CLI with every command of the ``taskemit`` command."""
    from ..cli.group import cli as taskemit_cli

    listeners = list(listeners)

    def prepare(**options: Any) -> None:
        os.environ.update(settings_environment(settings))
        if not settings.listeners and "TASKEMIT_LISTENERS" not in os.environ:
            modules = _listener_modules(listeners)
            if modules:
                os.environ["TASKEMIT_LISTENERS"] = ",".join(modules)
        assert taskemit_cli.callback is not None
        taskemit_cli.callback(**options)

    return click.Group(
        "taskemit",
        commands=taskemit_cli.commands,
        params=list(taskemit_cli.params),
        callback=prepare,
        help=f"taskemit's commands, on this app's settings.\n\n{taskemit_cli.help or ''}",
        context_settings=taskemit_cli.context_settings,
    )
