"""``TaskEmitPlugin``: taskemit in a Litestar app in one line, ``plugins=[TaskEmitPlugin(TaskEmitConfig(...))]``.

It sets the event emitter backend (with the config's settings), adds the config's listeners
and checks its cron schedules, injects the ``Emitter``, adds ``litestar taskemit ...``, runs a
worker in the app's lifespan if asked, relays the databases' outbox if asked (``outbox.py``), and
serves the dashboard at ``dashboard_path`` if set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from litestar import Request, Router
from litestar.config.csrf import CSRFConfig
from litestar.di import Provide
from litestar.events import SimpleEventEmitter
from litestar.exceptions import ImproperlyConfiguredException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.plugins import CLIPlugin, InitPlugin
from litestar.types import ControllerRouterHandler, Guard

from ..emit import Emitter
from ..engine import InProcessWorker
from ..schedule.scheduler import check_schedules
from ..settings import Settings, load_settings
from .actions import PageActions
from .api import ApiActions, ApiReads
from .backend import ArqEventEmitter
from .config import TaskEmitConfig
from .outbox import check_outbox_sources, outbox_engines
from .overview import OverviewApiReads, OverviewPages
from .pages import Dashboard, Pages
from .schedules import ScheduleActions, ScheduleApiActions, ScheduleApiReads, SchedulePages
from .service import DashboardData

if TYPE_CHECKING:
    from click import Group
    from litestar import Litestar
    from litestar.config.app import AppConfig

__all__ = ("TaskEmitPlugin",)

#: the cookie of the dashboard's own CSRF check (when the app has no csrf_config)
CSRF_COOKIE = "taskemit_csrftoken"


class TaskEmitPlugin(InitPlugin, CLIPlugin):
    """Sets up taskemit in a Litestar app; see :class:`~taskemit.litestar.TaskEmitConfig`."""

    __slots__ = ("_listeners", "_settings", "config")

    def __init__(self, config: TaskEmitConfig | None = None) -> None:
        self.config = config if config is not None else TaskEmitConfig()
        self._settings: Settings | None = self.config.settings
        #: every listener of the app, once it is built
        self._listeners: list[Any] = list(self.config.listeners)

    @property
    def settings(self) -> Settings:
        """The settings in use: the config's, else those loaded when the app was built."""
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    # -- InitPlugin ------------------------------------------------------------------------------

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config, settings = self.config, self.settings
        backend = app_config.event_emitter_backend
        if backend is not SimpleEventEmitter and not issubclass(backend, ArqEventEmitter):
            raise ImproperlyConfiguredException(
                f"TaskEmitPlugin sets the event emitter backend, but the app was given {backend.__name__}"
            )
        app_config.event_emitter_backend = ArqEventEmitter.configured(settings)
        known = {id(item) for item in app_config.listeners}
        app_config.listeners.extend(cast(Any, item) for item in config.listeners if id(item) not in known)
        self._listeners = list(app_config.listeners)
        if config.crons:  # a schedule whose event has no listener fails here, when the app is built
            check_schedules(config.crons, app_config.listeners, settings)
        key = config.emitter_dependency_key
        if key in app_config.dependencies:
            raise ImproperlyConfiguredException(f"the app already has a dependency named {key!r}")
        app_config.dependencies[key] = Provide(provide_emitter, sync_to_thread=False)
        if config.outbox:
            check_outbox_sources(config.outbox, app_config)
            app_config.on_startup.append(self._relay_outbox)
        if config.run_workers_in_app:
            app_config.lifespan.append(self._in_app_worker)
        if config.dashboard_path is not None:
            data = DashboardData(settings)
            app_config.lifespan.append(lambda app: data.connected())
            app_config.route_handlers.append(self._dashboard(app_config, data))
        return app_config

    async def _relay_outbox(self, app: Litestar) -> None:
        """At start-up, after every lifespan (the engines exist, ``create_all`` has run): relay the
        outbox of each database until the emitter closes."""
        backend = cast(ArqEventEmitter, app.event_emitter)
        await backend.emitter.relay_outbox(*outbox_engines(self.config.outbox, app))

    def _in_app_worker(self, app: Litestar) -> InProcessWorker:
        """A worker for every listener of the app's emitter, with the config's cron schedules."""
        backend = cast(ArqEventEmitter, app.event_emitter)
        options = dict(self.config.worker_options)
        return InProcessWorker(backend.emitter.registry.listeners, self.settings, crons=self.config.crons, **options)

    def _dashboard(self, app_config: AppConfig, data: DashboardData) -> Router:
        config = self.config
        assert config.dashboard_path is not None and config.guards is not None
        middleware = []
        if app_config.csrf_config is None:
            if not config.csrf_secret:
                raise ImproperlyConfiguredException(
                    "the taskemit dashboard's actions need CSRF protection: give the app "
                    "csrf_config=CSRFConfig(secret=...), or TaskEmitConfig(csrf_secret=...) to protect "
                    "the dashboard alone"
                )
            csrf = CSRFConfig(secret=config.csrf_secret, cookie_name=CSRF_COOKIE, cookie_path=config.dashboard_path)
            middleware.append(DefineMiddleware(CSRFMiddleware, config=csrf))
        reads = [Pages, ApiReads, OverviewPages, OverviewApiReads, SchedulePages, ScheduleApiReads]
        actions = [PageActions, ApiActions, ScheduleActions, ScheduleApiActions]
        dashboard = Dashboard(data, config.dashboard_path, config.refresh_interval)
        handlers: list[ControllerRouterHandler] = [
            *(_bound(cls, dashboard, config.view_guards, config.include_in_schema) for cls in reads),
            *(_bound(cls, dashboard, config.guards, config.include_in_schema) for cls in actions),
        ]
        return Router(path=config.dashboard_path, route_handlers=handlers, middleware=middleware)

    # -- CLIPlugin -------------------------------------------------------------------------------

    def on_cli_init(self, cli: Group) -> None:
        from .cli import taskemit_group

        cli.add_command(taskemit_group(self.settings, self._listeners))


def _bound(cls: type, dashboard: Dashboard, guards: Sequence[Guard], include_in_schema: bool) -> Any:
    """A subclass of the dashboard controller ``cls`` serving ``dashboard`` behind ``guards``."""
    attributes: dict[str, Any] = {"dashboard": dashboard, "guards": list(guards)}
    if not include_in_schema:
        attributes["include_in_schema"] = False
    return type(cls.__name__, (cls,), attributes)


def provide_emitter(request: Request[Any, Any, Any]) -> Emitter:
    """The app's :class:`~taskemit.Emitter` (the ``emitter`` dependency)."""
    backend = request.app.event_emitter
    if not isinstance(backend, ArqEventEmitter):  # pragma: no cover - the plugin set it
        raise ImproperlyConfiguredException("the app's event emitter backend is not taskemit's")
    return backend.emitter
