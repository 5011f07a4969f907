"""Redis clients as taskemit makes them: bounded calls, dead connections noticed, primaries only.

Every client taskemit opens comes from :func:`redis_client` (asyncio) or :func:`sync_client`,
built from the settings:

- every command is bounded by a socket timeout (``redis_timeout``, or less for a caller that
  must hear back sooner, such as a worker renewing leases), and connecting by
  ``connect_timeout``;
- TCP keepalive probes an idle connection after a few seconds, and ``TCP_USER_TIMEOUT`` drops
  one whose sent data stays unacknowledged, so a half-open connection (a peer that vanished
  without a FIN) fails within seconds instead of the kernel's retransmit time (minutes);
- a connection idle for ``health_check_interval`` seconds is PINGed before it is used again;
- redis-py does not resend on its own (``Retry`` with no retries): a call whose connection was
  lost may have run, and only its caller knows whether sending it again is safe;
- a connection whose server answers READONLY (it was demoted in a failover; a managed
  endpoint's name already points elsewhere) is closed and the call fails as a lost connection,
  so the next one connects afresh, to wherever the name points now;
- ``redis+sentinel://`` (``rediss+sentinel://`` for TLS) URLs name Sentinels and a service:
  the client (made in ``store.sentinel``) asks them for the current primary on every new
  connection, so a failover is followed without a restart;
- ``redis+cluster://`` (``rediss+cluster://`` for TLS) URLs name some nodes of a Redis Cluster:
  the client (``store.cluster.ClusterClient``) learns the cluster's slots from them and follows
  MOVED replies and failovers; a ``redis://`` URL that names a cluster node is refused at its
  first connection (``INFO cluster`` says ``cluster_enabled:1``), with the scheme to use;
- every connection to Redis speaks the protocol of ``redis_protocol`` (RESP2 or RESP3), whatever
  redis-py's own default (RESP2 before 8, RESP3 from 8 on); connections to Sentinels speak RESP2.

:func:`parse_redis_url` is the pure part: what a URL names (a Sentinel URL's service, database
and options are read in ``store.sentinel``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis as sync_redis
from redis import asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ReadOnlyError
from redis.retry import Retry

from ..errors import InvalidArgument, redact_url
from .faults import NotPrimary
from .sentinel import SENTINEL_PORT, sentinel_client, sentinel_fields, sync_sentinel_client

__all__ = (
    "SCHEMES",
    "ClientSettings",
    "RedisTarget",
    "drop_connections",
    "keepalive_options",
    "parse_redis_url",
    "raise_if_cancelled",
    "redis_client",
    "sync_client",
)


class ClientSettings(Protocol):
    """The settings a client is made from (``taskemit.Settings`` has them; it imports this module
    to check its ``redis_url``)."""

    @property
    def redis_url(self) -> str: ...
    @property
    def redis_timeout(self) -> float: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def health_check_interval(self) -> float: ...
    @property
    def redis_protocol(self) -> int: ...


#: URL schemes taskemit understands
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
_REDIS_PORT = 6379
#: keepalive: first probe after this many idle seconds, then every few seconds, three in all
_KEEPIDLE = 5
_KEEPINTVL = 2
_KEEPCNT = 3
#: query options taken as they are by redis-py's connections (TLS and the like)
_PASSED_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
    "client_name",
)

ClientT = TypeVar("ClientT", bound=aioredis.Redis)


def refuse_cluster_node(info: Any, host: Any, port: Any) -> None:
    """InvalidArgument when ``info`` (the reply to ``INFO cluster``) is a cluster node's."""
    text = info.decode() if isinstance(info, bytes) else str(info)
    if isinstance(info, dict):
        text = f"cluster_enabled:{info.get('cluster_enabled', 0)}"
    if "cluster_enabled:1" in text:
        raise InvalidArgument(
            f"the Redis at {host}:{port} is a node of a Redis Cluster: use a redis+cluster://{host}:{port}/ "
            "URL (rediss+cluster:// for TLS), which follows the cluster's slots"
        )


class _PrimaryOnly:
    """A connection that gives up on a server answering READONLY (no longer the primary), and
    refuses a cluster node (its URL must say ``redis+cluster://``)."""

    async def on_connect(self) -> None:
        if hasattr(super(), "on_connect_check_health"):  # redis-py 6+: it runs the one below
            await super().on_connect()  # type: ignore[misc]
            return
        await super().on_connect()  # type: ignore[misc]
        await self._refuse_cluster_node()

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health=check_health)  # type: ignore[misc]
        await self._refuse_cluster_node()

    async def _refuse_cluster_node(self) -> None:
        await self.send_command("INFO", "cluster", check_health=False)  # type: ignore[attr-defined]
        refuse_cluster_node(await self.read_response(), getattr(self, "host", ""), getattr(self, "port", ""))

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ReadOnlyError as exc:
            await self.disconnect()  # type: ignore[attr-defined]
            raise NotPrimary(f"the server is no longer the primary: {exc}") from exc


class _PrimaryOnlyConnection(_PrimaryOnly, Connection):
    pass


class _PrimaryOnlySSLConnection(_PrimaryOnly, SSLConnection):
    pass


_PRIMARY_ONLY: dict[type[Any], type[Any]] = {
    Connection: _PrimaryOnlyConnection,
    SSLConnection: _PrimaryOnlySSLConnection,
}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names: one server (``redis://``, ``rediss://``, ``unix://``), or a
    Sentinel-managed primary (``redis+sentinel://``)."""

    url: str
    sentinel: bool = False
    #: a Redis Cluster (``redis+cluster://``)
    cluster: bool = False
    #: the Sentinels (host, port), for a Sentinel URL; the cluster nodes to start from, for a cluster URL
    hosts: tuple[tuple[str, int], ...] = ()
    #: the service (the ``master name`` the Sentinels monitor)
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: options for the Sentinels themselves (sentinel_password, ...)
    sentinel_options: Mapping[str, str] = field(default_factory=dict)
    #: other options for the connections (TLS files, client name)
    options: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return redact_url(self.url)


def parse_redis_url(url: str) -> RedisTarget:
    """What ``url`` names; InvalidArgument saying what is wrong with it.

    Sentinel URLs: ``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]``
    with ``?sentinel_password=...`` (and ``sentinel_username``) when the Sentinels need their
    own credentials; the user and password in front are the primary's. ``rediss+sentinel://``
    speaks TLS to both (``ssl_ca_certs``, ``ssl_certfile``, ... as query options).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise InvalidArgument(
            f"a Redis URL must start with {', '.join(s + '://' for s in SCHEMES)}; got {redact_url(url)!r}"
        )
    if scheme.endswith("+cluster"):
        return _parse_cluster_url(url, tls=scheme == "rediss+cluster")
    if not scheme.endswith("+sentinel"):
        return RedisTarget(url, tls=scheme == "rediss")
    parts = urlsplit(url)
    username, password, hostlist = _credentials(parts.netloc)
    hosts = tuple(_host_port(item, url) for item in hostlist.split(",") if item)
    if not hosts:
        raise InvalidArgument(f"a Sentinel URL names at least one Sentinel host: {redact_url(url)!r}")
    return RedisTarget(
        url,
        sentinel=True,
        hosts=hosts,
        username=username,
        password=password,
        tls=scheme == "rediss+sentinel",
        **sentinel_fields(url, parts.path, parts.query, _PASSED_OPTIONS),
    )


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, _, hostlist = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    return username, password, hostlist


def _parse_cluster_url(url: str, tls: bool) -> RedisTarget:
    """``redis+cluster://[user:password@]host[:port][,host[:port]...]/[?options]``."""
    parts = urlsplit(url)
    username, password, hostlist = _credentials(parts.netloc)
    hosts = tuple(_host_port(item, url, _REDIS_PORT) for item in hostlist.split(",") if item)
    if not hosts:
        raise InvalidArgument(f"a cluster URL names at least one node (host:port): {redact_url(url)!r}")
    if parts.path.strip("/") not in ("", "0"):
        raise InvalidArgument(f"a Redis Cluster has only database 0; the URL's path is /: {redact_url(url)!r}")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(_PASSED_OPTIONS))
    if unknown:
        raise InvalidArgument(
            f"unknown option(s) {', '.join(unknown)} in a cluster URL (known: {', '.join(_PASSED_OPTIONS)}): "
            f"{redact_url(url)!r}"
        )
    return RedisTarget(url, cluster=True, hosts=hosts, username=username, password=password, tls=tls, options=query)


def _host_port(item: str, url: str, default_port: int = SENTINEL_PORT) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = item.partition(":")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise InvalidArgument(f"bad address {item!r} in {redact_url(url)!r}") from None


def keepalive_options(timeout: float) -> dict[int, int]:
    """TCP options (Linux names, where the platform has them) that notice a dead peer within
    about ``timeout`` seconds, idle or not."""
    options: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", _KEEPIDLE),
        ("TCP_KEEPINTVL", _KEEPINTVL),
        ("TCP_KEEPCNT", _KEEPCNT),
        # data sent and not acknowledged for this long closes the connection
        ("TCP_USER_TIMEOUT", max(1000, int(timeout * 1000))),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            options[option] = value
    return options


def _connection_options(
    settings: ClientSettings, timeout: float | None, health_check: bool, *, asyncio: bool
) -> dict[str, Any]:
    bound = settings.redis_timeout if timeout is None else timeout
    options: dict[str, Any] = {
        "socket_timeout": bound,
        "socket_connect_timeout": settings.connect_timeout,
        # redis-py 8 warns when an asyncio client is given the blocking client's Retry
        "retry": (AsyncRetry if asyncio else Retry)(NoBackoff(), 0),
        "protocol": settings.redis_protocol,
    }
    if not settings.redis_url.startswith("unix://"):
        options["socket_keepalive"] = True
        options["socket_keepalive_options"] = keepalive_options(bound)
    if health_check:
        options["health_check_interval"] = settings.health_check_interval
    return options


def redis_client(
    settings: ClientSettings,
    *,
    timeout: float | None = None,
    client_class: type[ClientT] = aioredis.Redis,  # type: ignore[assignment]
    health_check: bool = True,
    **extra: Any,
) -> ClientT:
    """An asyncio client on the settings' Redis; every call bounded by ``timeout`` seconds
    (default: the ``redis_timeout`` setting). ``extra`` goes to redis-py (``decode_responses``...)."""
    target = parse_redis_url(settings.redis_url)
    options = {**_connection_options(settings, timeout, health_check, asyncio=True), **extra}
    if target.cluster:
        from redis.asyncio.cluster import ClusterNode

        from .cluster import ClusterClient

        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        return cast(ClientT, ClusterClient(startup_nodes=nodes, **_cluster_kwargs(target, options)))
    if not target.sentinel:
        pool = aioredis.ConnectionPool.from_url(settings.redis_url, **options)
        pool.connection_class = _PRIMARY_ONLY.get(pool.connection_class, pool.connection_class)
        return cast(ClientT, client_class.from_pool(pool))
    return sentinel_client(target, options, client_class)


def sync_client(settings: ClientSettings, *, timeout: float | None = None, **extra: Any) -> sync_redis.Redis:
    """A blocking client on the settings' Redis (for code that has no event loop: metrics, tests)."""
    target = parse_redis_url(settings.redis_url)
    options = {**_connection_options(settings, timeout, True, asyncio=False), **extra}
    if target.cluster:
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in target.hosts]  # type: ignore[no-untyped-call]
        return cast(sync_redis.Redis, RedisCluster(startup_nodes=nodes, **_cluster_kwargs(target, options)))
    if not target.sentinel:
        client = sync_redis.Redis.from_url(settings.redis_url, **options)
        client.connection_pool.connection_class = _sync_primary_only(client.connection_pool.connection_class)
        return client
    return sync_sentinel_client(target, options)


def _sync_primary_only(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` (blocking) that refuses a cluster node, as ``_PrimaryOnly`` does."""

    class _Refusing(connection_class):  # type: ignore[misc]
        def on_connect(self) -> None:
            if hasattr(super(), "on_connect_check_health"):  # redis-py 6+: it runs the one below
                super().on_connect()
                return
            super().on_connect()
            self._refuse_cluster_node()

        def on_connect_check_health(self, check_health: bool = True) -> None:
            super().on_connect_check_health(check_health=check_health)
            self._refuse_cluster_node()

        def _refuse_cluster_node(self) -> None:
            self.send_command("INFO", "cluster", check_health=False)
            refuse_cluster_node(self.read_response(), getattr(self, "host", ""), getattr(self, "port", ""))

    return _Refusing


def _cluster_kwargs(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    # a call whose connection was lost is not sent again (its caller knows whether that is safe);
    # MOVED and ASK replies (the command did not run) are followed
    kwargs = {**options, **target.options}
    if int(sync_redis.__version__.split(".")[0]) < 6:  # 6+: the Retry of no retries in options says it
        kwargs["cluster_error_retry_attempts"] = 0
    if target.username:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    if target.tls:
        kwargs["ssl"] = True
    return kwargs


async def drop_connections(client: Any) -> None:
    """Close every connection of ``client``'s pool (idle and in use): the node they reach is no
    longer the primary (a READONLY reply), so the next call connects again, to wherever the
    name points now (a Sentinel-managed pool asks the Sentinels on every new connection)."""
    if hasattr(client, "nodes_manager"):  # a cluster: every node's connections, and its slots read again
        close = getattr(client, "aclose", None) or client.close
        await close()
        client._initialize = True
        return
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect()


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop and the request got lost.

    redis-py before 8 can swallow a cancellation that lands during the zero-timeout readiness
    check of a pooled connection (``can_read_destructive``): the call returns, and the task goes
    on, still marked as cancelling, and would never stop. Every loop that runs until cancelled
    and calls Redis calls this at its top (outside any ``asyncio.timeout`` block).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
