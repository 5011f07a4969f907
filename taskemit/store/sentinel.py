"""Sentinel-managed primaries: what a ``redis+sentinel://`` URL names beyond its hosts, and the
clients that find the primary through the Sentinels.

A ``redis+sentinel://`` (``rediss+sentinel://`` for TLS) URL names Sentinels and a service (the
``master name`` they monitor): the client asks them for the current primary on every new
connection, so a failover is followed without a restart. The Sentinels' own credentials are the
URL's ``sentinel_username`` and ``sentinel_password`` options; the user and password in front are
the primary's. Connections to the Sentinels speak RESP2, whatever ``redis_protocol`` says.

``store.connection`` parses the rest of the URL and makes every other kind of client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypedDict, TypeVar, cast
from urllib.parse import parse_qsl, unquote

import redis as sync_redis
from redis import asyncio as aioredis

from ..errors import InvalidArgument, redact_url

__all__ = (
    "SENTINEL_OPTIONS",
    "SENTINEL_PORT",
    "SentinelFields",
    "SentinelTarget",
    "sentinel_client",
    "sentinel_fields",
    "sync_sentinel_client",
)

#: the port of a Sentinel host named without one
SENTINEL_PORT = 26379
#: query options of a Sentinel URL that are the Sentinels' own, not the primary's
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")

ClientT = TypeVar("ClientT", bound=aioredis.Redis)


class SentinelFields(TypedDict):
    """What a Sentinel URL's path and query name."""

    service: str
    db: int
    sentinel_options: dict[str, str]
    options: dict[str, str]


class SentinelTarget(Protocol):
    """What the clients below read of a Sentinel URL (``store.connection.RedisTarget`` has it)."""

    @property
    def hosts(self) -> tuple[tuple[str, int], ...]: ...
    @property
    def service(self) -> str: ...
    @property
    def db(self) -> int: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def tls(self) -> bool: ...
    @property
    def sentinel_options(self) -> Mapping[str, str]: ...
    @property
    def options(self) -> Mapping[str, str]: ...


def sentinel_fields(url: str, path: str, query: str, passed_options: tuple[str, ...]) -> SentinelFields:
    """The service, database and options that the ``path`` and ``query`` of the Sentinel URL
    ``url`` name; InvalidArgument saying what is wrong with them. ``passed_options`` are the query
    options taken as they are by the connections."""
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise InvalidArgument(
            f"a Sentinel URL's path is /SERVICE or /SERVICE/DB (the name the Sentinels monitor): {redact_url(url)!r}"
        )
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise InvalidArgument(f"the database in a Sentinel URL is a number: {redact_url(url)!r}") from None
    options = dict(parse_qsl(query))
    unknown = sorted(set(options) - set(SENTINEL_OPTIONS) - set(passed_options))
    if unknown:
        raise InvalidArgument(
            f"unknown option(s) {', '.join(unknown)} in a Sentinel URL (known: "
            f"{', '.join(SENTINEL_OPTIONS + passed_options)}): {redact_url(url)!r}"
        )
    return SentinelFields(
        service=parts[0],
        db=db,
        sentinel_options={k: v for k, v in options.items() if k in SENTINEL_OPTIONS},
        options={k: v for k, v in options.items() if k in passed_options},
    )


def sentinel_client(target: SentinelTarget, options: dict[str, Any], client_class: type[ClientT]) -> ClientT:
    """An asyncio client on the primary the Sentinels of ``target`` name (asked again on every new
    connection); ``options`` are the primary's connection options."""
    from redis.asyncio.sentinel import Sentinel

    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts),
        sentinel_kwargs=_sentinel_kwargs(target, options),
        **_primary_kwargs(target, options),
    )
    return cast(ClientT, sentinels.master_for(target.service, redis_class=client_class, check_connection=True))


def sync_sentinel_client(target: SentinelTarget, options: dict[str, Any]) -> sync_redis.Redis:
    """A blocking client on the primary the Sentinels of ``target`` name."""
    from redis.sentinel import Sentinel

    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs=_sentinel_kwargs(target, options), **_primary_kwargs(target, options)
    )
    return cast(sync_redis.Redis, sentinels.master_for(target.service, check_connection=True))  # type: ignore[no-untyped-call]


def _primary_kwargs(target: SentinelTarget, options: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**options, **target.options, "db": target.db}
    if target.username:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    if target.tls:
        kwargs["ssl"] = True
    return kwargs


def _sentinel_kwargs(target: SentinelTarget, options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        key: options[key]
        for key in ("socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options")
        if key in options
    }
    # the Sentinels' own connections speak RESP2 whatever redis_protocol says: redis-py 5 cannot read
    # a Sentinel's RESP3 replies (SENTINEL MASTERS), and what they answer is redis-py's to parse
    kwargs["protocol"] = 2
    if "sentinel_username" in target.sentinel_options:
        kwargs["username"] = target.sentinel_options["sentinel_username"]
    if "sentinel_password" in target.sentinel_options:
        kwargs["password"] = target.sentinel_options["sentinel_password"]
    if target.tls:
        kwargs["ssl"] = True
        kwargs.update(target.options)
    return kwargs
