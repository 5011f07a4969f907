"""Which settings file is read: one passed to ``load_settings``, else ``$TASKEMIT_SETTINGS``, else
``./settings.toml`` when it exists (else the defaults and the environment alone)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from .errors import SettingsFileNotFound

__all__ = ("DEFAULT_SETTINGS_FILE", "SETTINGS_ENV_VAR", "named_file", "settings_path")

SETTINGS_ENV_VAR = "TASKEMIT_SETTINGS"
DEFAULT_SETTINGS_FILE = "settings.toml"

_explicit_path: ContextVar[Path | None] = ContextVar("taskemit_settings_path", default=None)


@contextlib.contextmanager
def named_file(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """While inside, ``settings_path`` is ``path`` (when given): the file ``load_settings`` was handed."""
    token = _explicit_path.set(Path(path) if path is not None else None)
    try:
        yield
    finally:
        _explicit_path.reset(token)


def settings_path() -> Path | None:
    """The settings file in force: an explicit path, ``$TASKEMIT_SETTINGS``, or ``./settings.toml``.

    Returns None when no file is named and ``./settings.toml`` does not exist (defaults apply).
    A file named explicitly or by the environment must exist: a typo there is an error, not
    a silent fallback to defaults.
    """
    named = _explicit_path.get() or os.environ.get(SETTINGS_ENV_VAR)
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsFileNotFound(
                f"taskemit settings file {str(path)!r} (from {SETTINGS_ENV_VAR} or load_settings()) does not exist"
            )
        return path
    default = Path(DEFAULT_SETTINGS_FILE)
    return default if default.is_file() else None
