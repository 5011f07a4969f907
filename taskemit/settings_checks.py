"""What makes a setting's value valid, apart from its type and bounds: the Redis URL taskemit can
connect to, the durability a number of replicas can give, a backoff curve and ``[[cron]]`` tables
that read back as written, and lists given as one comma-separated string (an environment
variable). The settings model's validators call these; a ``ValueError`` they raise becomes a
validation error naming the setting.
"""

from __future__ import annotations

from typing import Any

from .policy import Backoff
from .schedule.cron import CronSchedule, unique_schedules
from .store.connection import parse_redis_url

__all__ = ("check_durability", "check_redis_url", "comma_list", "is_cluster_url", "normal_backoff", "normal_cron")


def check_redis_url(value: str) -> str:
    """``value``, if it is a URL taskemit connects to Redis with (InvalidArgument otherwise)."""
    parse_redis_url(value)  # InvalidArgument is a ValueError: a validation error naming "redis_url"
    return value


def is_cluster_url(redis_url: str) -> bool:
    """Whether ``redis_url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return redis_url.split("://", 1)[0].endswith("+cluster")


def check_durability(durability: str, min_replicas: int) -> None:
    """A ``ValueError`` when ``durability`` needs more replicas than ``min_replicas``."""
    if durability == "replicated" and min_replicas < 1:
        raise ValueError(
            'durability = "replicated" needs min_replicas >= 1 (for the primary alone, use "memory" or "fsync")'
        )


def normal_backoff(value: dict[str, Any]) -> dict[str, Any]:
    """A backoff table as ``Backoff.to_dict()`` writes it (ValueError when it is not one)."""
    return Backoff.from_dict(value).to_dict()


def normal_cron(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[[cron]]`` tables as ``CronSchedule.to_table()`` writes them, each schedule once."""
    # CronConfigError is a ValueError: a validation error naming "cron" and the schedule
    return [schedule.to_table() for schedule in unique_schedules(map(CronSchedule.from_table, value))]


def comma_list(value: Any) -> Any:
    """A list from a comma-separated string (``TASKEMIT_LISTENERS="app.listeners,app.more"``); any
    other value (a TOML list) as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value
