"""The outbox in a Litestar app: ``TaskEmitConfig(outbox=True)`` with advanced-alchemy's ``SQLAlchemyPlugin``.

When the app starts (after every lifespan, so after advanced-alchemy created its engines and,
with ``create_all``, its tables) the app's emitter checks each database's outbox table and
relays it from then on: rows earlier processes left first, then each request's commits. A
handler emits with the request's session, ``emitter.emit(..., session=db_session)``, and
advanced-alchemy's ``before_send`` handler commits it with the handler's rows or rolls it back.
advanced-alchemy is imported only when the outbox is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litestar.exceptions import ImproperlyConfiguredException

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.config.app import AppConfig

__all__ = ("check_outbox_sources", "outbox_engines")


def _sqlalchemy_configs(plugins: Sequence[Any]) -> list[Any]:
    """The configs of the advanced-alchemy SQLAlchemy plugins in ``plugins``."""
    try:
        from advanced_alchemy.extensions.litestar import SQLAlchemyInitPlugin, SQLAlchemyPlugin
    except ImportError:
        raise ImproperlyConfiguredException(
            "TaskEmitConfig(outbox=True) relays the databases of advanced-alchemy's SQLAlchemyPlugin: "
            "pip install 'taskemit[advanced-alchemy]', or give outbox=[engine, ...]"
        ) from None
    configs: list[Any] = []
    for plugin in plugins:
        if isinstance(plugin, SQLAlchemyInitPlugin | SQLAlchemyPlugin):
            configs.extend(config for config in plugin.config if config not in configs)
    return configs


def check_outbox_sources(outbox: bool | Sequence[Any], app_config: AppConfig) -> None:
    """Fail when the app is built if ``outbox=True`` finds no database to relay."""
    if outbox is True and not _sqlalchemy_configs(app_config.plugins):
        raise ImproperlyConfiguredException(
            "TaskEmitConfig(outbox=True) relays the databases of advanced-alchemy's SQLAlchemyPlugin, and the app "
            "has none: add SQLAlchemyPlugin(config=...) to plugins, or give outbox=[config or engine, ...]"
        )


def outbox_engines(outbox: bool | Sequence[Any], app: Litestar) -> list[Any]:
    """The engines to relay: those of the app's SQLAlchemy plugins (``True``), or of the given
    advanced-alchemy configs and engines."""
    sources = _sqlalchemy_configs(list(app.plugins)) if outbox is True else list(outbox or ())
    return [source.get_engine() if hasattr(source, "get_engine") else source for source in sources]
