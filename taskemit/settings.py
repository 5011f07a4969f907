"""taskemit's settings: ``settings.toml`` overridden by ``TASKEMIT_*`` environment variables.

The file is ``settings.toml`` in the working directory unless ``TASKEMIT_SETTINGS`` names
another one (``settings_file``). Emitters and workers read the same model, so both sides agree
on the queue, the serializer and the Redis URL. The model declares every setting with its type,
bounds, default and description; what else makes a value valid is checked in ``settings_checks``.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .policy import Backoff, RetryPolicy
from .schedule.cron import CronSchedule
from .settings_checks import check_durability, check_redis_url, comma_list, is_cluster_url, normal_backoff, normal_cron
from .settings_file import named_file, settings_path
from .store.keys import DEFAULT_NAMESPACE, KeySpace, check_namespace

__all__ = ("Settings", "load_settings", "settings_path")


class Settings(BaseSettings):
    """Everything an emitter and a worker need to agree on, with production defaults."""

    model_config = SettingsConfigDict(
        env_prefix="TASKEMIT_",
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis to store jobs and event records in: redis://, rediss:// (TLS) or unix://; or "
        "redis+sentinel://[user:password@]host:26379[,host:26379...]/SERVICE[/DB] (rediss+sentinel:// for "
        "TLS; ?sentinel_password=... when the Sentinels have their own), which follows failovers; or "
        "redis+cluster://[user:password@]host:port[,host:port...]/ (rediss+cluster:// for TLS) for a Redis Cluster.",
    )
    namespace: str = Field(
        DEFAULT_NAMESPACE,
        description="Prefix and Redis Cluster hash tag of every key: apps sharing one Redis each take their own.",
    )
    queue_name: str = Field(
        "default",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The queue listener jobs go to unless a listener names its own (Redis key {namespace}:queue:NAME).",
    )
    job_timeout: float = Field(
        300.0, gt=0, description="Seconds one attempt of a listener may run before it is cancelled (and retried)."
    )
    max_tries: int = Field(5, ge=1, description="Attempts per listener job, the first included (default policy).")
    backoff: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "exponential", "first": 1.0, "factor": 2.0, "cap": 300.0, "jitter": "full"},
        description="Default backoff curve between attempts, as Backoff.to_dict() writes it.",
    )
    job_expiry: int = Field(
        86_400, gt=0, description="Seconds a job may wait in the queue (after its scheduled time) before it expires."
    )
    dead_letter_retention: int = Field(
        30 * 86_400, gt=0, description="Seconds a dead letter is kept for inspection and replay."
    )
    result_retention: int = Field(
        86_400, ge=0, description="Seconds arq keeps a finished job's result (0: do not keep results)."
    )
    arq_results: bool = Field(
        False,
        description="Whether taskemit's worker writes arq's result of each finished job (`arq:result:<id>`, a "
        "copy of its arguments, kept result_retention seconds), for arq's Job API. A stock arq worker writes "
        "its own results either way, and so does `taskemit abort` for the job it settles.",
    )
    event_retention: int = Field(
        7 * 86_400, gt=0, description="Seconds an event record (its jobs and their outcomes) is kept."
    )
    serializer: Literal["json", "pickle"] = Field(
        "json", description="Job payload encoding. JSON is inspectable and never runs code from Redis."
    )
    listeners: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules holding listeners, imported by `taskemit worker` when no target is given.",
    )
    redact_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["password", "token", "secret", "authorization"],
        description="Argument names whose values the CLI shows as [redacted] (any name containing one, "
        "case-insensitive).",
    )
    max_jobs: int = Field(
        100, gt=0, description="Jobs one worker process runs at the same time (`taskemit worker --concurrency`)."
    )
    sync_threads: int = Field(
        32, gt=0, description="Threads per worker process that run sync (non-async) listeners (`--threads`)."
    )
    idle_poll: float = Field(
        2.0,
        gt=0,
        description="Seconds between a worker's looks at its queues when nothing woke it: a safety net, since "
        "emits, due times and lease expiries wake the worker.",
    )
    poll_delay: float = Field(
        0.1, gt=0, description="Seconds a stock arq worker (`arq module.WorkerSettings`) waits between polls."
    )
    lease_ttl: float = Field(
        10.0,
        ge=2,
        description="Seconds a worker's claim on a running job lasts unless renewed; the worker renews it three "
        "times per lease while the listener runs, so a killed worker's jobs run again within about this long.",
    )
    max_jobs_per_child: int = Field(
        0,
        ge=0,
        description="Jobs a worker process runs before it stops gracefully to be replaced by a fresh one "
        "(exit code 75; `taskemit worker -p N` starts the new one at once). 0: no limit.",
    )
    max_memory_mb: int = Field(
        0,
        ge=0,
        description="Resident memory (MiB) past which a worker process stops gracefully to be replaced, as with "
        "max_jobs_per_child. 0: no limit.",
    )
    loop_lag_warning: float = Field(
        1.0,
        gt=0,
        description="Seconds a worker's event loop may be blocked before it logs a warning naming the async "
        "listeners that were running (one that calls time.sleep, or computes for long, stalls every job).",
    )
    shutdown_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds a stopping worker lets running listeners finish; the jobs still running then are "
        "given back to the queue without counting the attempt.",
    )
    tracing: bool = Field(
        True,
        description="OpenTelemetry spans for emits and listener runs, the emitting request's trace carried into "
        "each job, when opentelemetry-api is installed (the otel extra).",
    )
    catalog_refresh: float = Field(
        1.0,
        gt=0,
        description="Seconds between an emitter's reads of the listener catalog (for an emitter without "
        "listeners, and for broadcast, singleton and unreliable listeners: which workers are live).",
    )
    priority_step: float = Field(
        60.0,
        gt=0,
        description="Seconds of waiting one step of priority is worth: a due job of priority p (0-100) is claimed as "
        "if it had been due p x priority_step seconds earlier, so a higher priority goes first, and a lower one "
        "that has waited longer than the difference never waits behind it.",
    )
    catalog_retention: int = Field(
        86400,
        ge=60,
        description="Seconds the catalog keeps describing a listener after its last live worker stopped, so "
        "dispatchers keep queueing its reliable events while its workers restart or deploy.",
    )
    history: bool = Field(
        True,
        description="Workers keep a history of their listeners' outcomes, run times and emit-to-start latencies in "
        "time buckets (per minute, per 5 minutes, per hour), with samples of queue depth and busy workers: the "
        "dashboard's overview, `taskemit stats` and the rates of `read_listener_stats` read it.",
    )
    history_interval: float = Field(
        5.0,
        ge=1,
        le=60,
        description="Seconds between a worker's writes of its history tallies (one script call each, whatever the "
        "number of jobs), and between samples of queue depth, waiting jobs and busy workers.",
    )
    history_minute_retention: int = Field(
        3 * 3600,
        ge=3600,
        description="Seconds the per-minute history buckets are kept (the last hour's charts read them).",
    )
    history_five_minute_retention: int = Field(
        2 * 86_400,
        ge=86_400,
        description="Seconds the 5-minute history buckets are kept (the last 24 hours' charts read them).",
    )
    history_hour_retention: int = Field(
        31 * 86_400,
        ge=30 * 86_400,
        description="Seconds the hourly history buckets are kept (the last 30 days' charts read them).",
    )
    drain_on_exit: bool = Field(
        False, description="On leaving the emitter, run an in-process worker until its jobs finished (tests)."
    )
    on_unknown_event: Literal["raise", "ignore"] = Field(
        "raise", description="What emit does with an event id no listener listens to."
    )
    max_payload_bytes: int = Field(
        1_048_576,
        gt=0,
        description="The largest job payload an emit may store, in bytes (1 MiB); larger ones raise PayloadTooLarge.",
    )
    emit_buffer_size: int = Field(
        10_000, gt=0, description="Events an emitter holds in memory while they wait to be stored."
    )
    spool: bool = Field(
        True,
        description="Keep emitted events that Redis did not take on local disk (when the buffer is full, and "
        "when an emitter closes during an outage) until an emitter or `taskemit spool flush` stores them.",
    )
    spool_dir: str = Field(
        "",
        description="Directory of the spool files, one per namespace (default: $XDG_STATE_HOME/taskemit/spool, "
        "else ~/.local/state/taskemit/spool).",
    )
    spool_size: int = Field(1_000_000, gt=0, description="Events one spool file holds at most.")
    on_spool_full: Literal["raise", "block"] = Field(
        "raise",
        description="When the buffer and the spool are both full: raise EmitBufferFull at emit, or block the "
        "emitting thread (never the emitter's own event loop) up to spool_block_timeout seconds.",
    )
    spool_block_timeout: float = Field(
        10.0, ge=0, description='Seconds an emit blocks for room when on_spool_full is "block".'
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds an emitter waits for a connection to Redis before it counts Redis as down."
    )
    publish_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds `publish` waits for its event to be stored (and any one Redis call of an emitter "
        "may take) before it raises RedisUnavailable.",
    )
    redis_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds any one Redis call may take before its connection counts as dead (the socket "
        "timeout; a worker bounds its own calls by a third of lease_ttl at most). TCP keepalive notices a "
        "half-open connection within about as long.",
    )
    health_check_interval: float = Field(
        10.0,
        ge=0,
        description="Seconds a pooled Redis connection may sit idle before it is PINGed on its next use (0: never).",
    )
    redis_protocol: int = Field(
        2,
        ge=2,
        le=3,
        description="The protocol every Redis connection taskemit makes speaks: 2 (RESP2) or 3 (RESP3, Redis 6+; "
        "the default of redis-py 8). taskemit gives the same answers with either.",
    )
    durability: Literal["memory", "replicated", "fsync"] = Field(
        "memory",
        description='When a write counts as done: "memory" when the primary has it; "replicated" when '
        'min_replicas replicas have it too (WAIT); "fsync" when the primary\'s append-only file (and, with '
        "min_replicas > 0, that many replicas' files) has it on disk (WAITAOF, Redis 7.2+). publish() returns, and "
        "workers start or forget a job, only once it holds.",
    )
    min_replicas: int = Field(
        1, ge=0, description='Replicas that must have a write for durability = "replicated" (or "fsync").'
    )
    durability_timeout: float = Field(
        1.0,
        gt=0,
        description="Seconds one wait for replicas (or for the fsync) may take before the write counts as not "
        "durable yet (and is waited for again, or, for publish, raises NotDurable past publish_timeout).",
    )
    shutdown_timeout: float = Field(
        10.0, gt=0, description="Seconds a closing emitter keeps trying to store buffered events."
    )
    outbox_table: str = Field(
        "taskemit_outbox",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="The table of the app's database that `emit(..., session=...)` adds events to "
        "(the transactional outbox), and that the relays read.",
    )
    outbox_relay: bool = Field(
        True,
        description="An emitter that emits into a database session relays that database's outbox itself, "
        "woken by each commit; false leaves the rows to `taskemit outbox relay`.",
    )
    outbox_batch: int = Field(1000, gt=0, le=10_000, description="Outbox rows a relay takes per claim.")
    outbox_poll: float = Field(
        1.0,
        gt=0,
        description="Seconds between a relay's looks at the outbox table when no commit woke it (rows of other "
        "processes, rows left by a crash).",
    )
    outbox_claim_ttl: float = Field(
        30.0,
        gt=0,
        description="Seconds a relay's claim on outbox rows lasts on databases without SKIP LOCKED (SQLite...): "
        "the rows of a relay that died are taken by another one after this long.",
    )
    cron: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Schedules, one [[cron]] table each: schedule, event, and optionally args, kwargs, tz, name, "
        "misfire, max_lateness, tick_kwarg.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return check_redis_url(value)

    @model_validator(mode="after")
    def _durability_needs_replicas(self) -> Settings:
        check_durability(self.durability, self.min_replicas)
        return self

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        return check_namespace(value)  # InvalidArgument is a ValueError: a validation error naming "namespace"

    @cached_property
    def keys(self) -> KeySpace:
        """Every Redis key of this namespace (each queue on a hash tag of its own on a Redis Cluster)."""
        return KeySpace(self.namespace, sharded=is_cluster_url(self.redis_url))

    @property
    def queue_key(self) -> str:
        """The Redis key of the default queue (``queue_name`` in this namespace)."""
        return self.keys.queue(self.queue_name)

    @field_validator("backoff")
    @classmethod
    def _valid_backoff(cls, value: dict[str, Any]) -> dict[str, Any]:
        return normal_backoff(value)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return normal_cron(value)

    @property
    def cron_schedules(self) -> tuple[CronSchedule, ...]:
        """The schedules of the ``[[cron]]`` tables."""
        return tuple(CronSchedule.from_table(table) for table in self.cron)

    @property
    def default_policy(self) -> RetryPolicy:
        """The retry policy of a listener that declares none of its own."""
        return RetryPolicy(max_tries=self.max_tries, backoff=Backoff.from_dict(self.backoff), timeout=self.job_timeout)

    @field_validator("listeners", "redact_keys", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        return comma_list(value)  # TASKEMIT_LISTENERS="app.listeners,app.more" as well as a TOML list

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = settings_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``path`` (or the default file) and the environment.

    Keyword overrides win over both. Raises ``pydantic.ValidationError`` naming the field
    when a value is invalid.
    """
    with named_file(path):
        return Settings(**overrides)
