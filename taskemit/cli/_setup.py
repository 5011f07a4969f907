"""What the commands that run user code share: importing a worker target, configuring logging."""

from __future__ import annotations

import logging.config
import os
import sys
from typing import Any

import click

__all__ = ("configure_logging", "import_target")


def import_target(target: str) -> Any:
    """``module:attr`` or arq's ``module.attr``, importable from the working directory like arq."""
    import importlib

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise click.BadParameter(f"{target!r} is not of the form module:WorkerSettings", param_hint="TARGET")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}", param_hint="TARGET") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}", param_hint="TARGET") from None


def configure_logging(verbose: bool) -> None:
    """Log lines as arq's CLI prints them (``HH:MM:SS: message``), for taskemit's loggers and arq's."""
    level = "DEBUG" if verbose else "INFO"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"taskemit": {"level": level, "class": "logging.StreamHandler", "formatter": "taskemit"}},
            "formatters": {"taskemit": {"format": "%(asctime)s: %(message)s", "datefmt": "%H:%M:%S"}},
            "loggers": {name: {"handlers": ["taskemit"], "level": level} for name in ("taskemit", "arq")},
        }
    )
