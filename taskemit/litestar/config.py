"""``TaskEmitConfig``: what ``TaskEmitPlugin`` sets up in a Litestar app."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar.exceptions import ImproperlyConfiguredException
from litestar.types import Guard

from ..schedule.cron import CronSchedule
from ..settings import Settings

__all__ = ("TaskEmitConfig",)


@dataclass
class TaskEmitConfig:
    """Configuration of :class:`~taskemit.litestar.TaskEmitPlugin`.

    Only ``dashboard_path`` turns the dashboard on; with it, ``guards`` must be given (``[]``
    leaves it open, for development only).
    """

    #: listeners (``taskemit.listener`` or Litestar's ``listener``), added to the app's own
    listeners: Sequence[Any] = ()
    #: cron schedules (``taskemit.cron(...)``): checked against the listeners when the app is built,
    #: run by the in-app worker's scheduler with ``run_workers_in_app``
    crons: Sequence[CronSchedule] = ()
    #: taskemit's settings; default: ``load_settings()`` (``settings.toml`` and ``TASKEMIT_*``)
    settings: Settings | None = None
    #: the name under which handlers receive the :class:`~taskemit.Emitter`
    emitter_dependency_key: str = "emitter"
    #: run a taskemit worker (and the cron scheduler) inside the app's lifespan: for development
    run_workers_in_app: bool = False
    #: keywords for that worker (``concurrency``, ``queues``, ``grace``, ...: ``InProcessWorker``'s)
    worker_options: Mapping[str, Any] = field(default_factory=dict)
    #: where the dashboard and its JSON API are served (``"/taskemit"``); None: not served
    dashboard_path: str | None = None
    #: guards of every dashboard action (replay, purge, abort, pause, resume, trigger), and of the
    #: views too unless ``read_guards`` is given
    guards: Sequence[Guard] | None = None
    #: guards of the dashboard's pages and JSON reads; default: ``guards``
    read_guards: Sequence[Guard] | None = None
    #: secret for the dashboard's own CSRF check when the app has no ``csrf_config``
    csrf_secret: str | None = None
    #: seconds between the dashboard's live refreshes
    refresh_interval: float = 2.0
    #: list the JSON API in the app's OpenAPI schema
    include_in_schema: bool = True
    #: relay the outbox tables of these databases from the app's start (``emit(..., session=db_session)``):
    #: True for every database of advanced-alchemy's ``SQLAlchemyPlugin``, or a list of advanced-alchemy
    #: configs and SQLAlchemy engines; a missing table fails the start-up (``OutboxTableMissing``)
    outbox: bool | Sequence[Any] = False

    def __post_init__(self) -> None:
        if not self.emitter_dependency_key.isidentifier():
            raise ImproperlyConfiguredException(
                f"emitter_dependency_key must be a Python identifier, got {self.emitter_dependency_key!r}"
            )
        if self.dashboard_path is not None:
            path = "/" + self.dashboard_path.strip("/")
            if path == "/":
                raise ImproperlyConfiguredException('dashboard_path must name a path below "/", e.g. "/taskemit"')
            self.dashboard_path = path
            if self.guards is None:
                raise ImproperlyConfiguredException(
                    "the taskemit dashboard can replay and purge jobs: give TaskEmitConfig(guards=[...]) "
                    "(guards=[] leaves it open to anyone who reaches the app)"
                )
        if self.refresh_interval <= 0:
            raise ImproperlyConfiguredException(f"refresh_interval must be > 0, got {self.refresh_interval}")

    @property
    def view_guards(self) -> list[Guard]:
        """The guards of the dashboard's read views."""
        chosen = self.read_guards if self.read_guards is not None else self.guards
        return list(chosen or ())
