"""What crosses between the worker loop and its Redis side (``batch``, ``settle``): where a
listener's jobs wait (``Route``), a job the worker holds (``Claim``), an attempt to settle
(``Finished``), and what one round trip came to (``ClaimBatch``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..emit.listener import Listener
from ..settings import Settings
from .outcome import Outcome

__all__ = ("Claim", "ClaimBatch", "Finished", "Route")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one listener's jobs wait: its arq queue, its ready, leased and delayed sets there,
    and the keys of its flow control (``KeySpace.flow``...)."""

    listener: str
    queue: str
    ready: str
    leased: str
    delayed: str = ""
    flow: str = ""
    flow_jobs: str = ""
    flow_keys: str = ""
    group_prefix: str = ""
    bucket_prefix: str = ""
    wake: str = ""

    @classmethod
    def of(cls, item: Listener, settings: Settings, broadcast_to: str | None = None, shard: int = 0) -> Route:
        """``item``'s route; with ``broadcast_to``, the one on that worker's own broadcast queue;
        with ``shard``, the one on that shard of its queue (a sharded listener on a Redis Cluster)."""
        space = settings.keys
        queue_name = item.queue or settings.queue_name
        queue = space.queue(queue_name, shard, item.shards)
        wake = space.wake_channel(queue)
        flows = space.for_queue(queue_name, shard, item.shards)  # a listener's flow control is on its queue's tag
        if broadcast_to is not None:
            queue = space.broadcast_queue(queue, broadcast_to)
        name = item.name
        return cls(
            name,
            queue,
            space.ready(queue, name),
            space.leased(queue, name),
            delayed=space.delayed(queue, name),
            flow=flows.flow(name),
            flow_jobs=flows.flow_jobs(name),
            flow_keys=flows.flow_keys(name),
            group_prefix=flows.flow_group_prefix(name),
            bucket_prefix=flows.flow_bucket_prefix(name),
            wake=wake,
        )

    @property
    def claim_keys(self) -> tuple[str, ...]:
        """Its keys in claim.lua's order."""
        return (self.ready, self.leased, self.queue, self.delayed, self.flow, self.flow_jobs, self.flow_keys)

    @property
    def claim_args(self) -> tuple[str, ...]:
        """Its arguments in claim.lua's order."""
        return (self.group_prefix, self.bucket_prefix, self.wake, self.listener)


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker now holds the lease of, with the claim's token."""

    job_id: str
    route: int  # index into JobStore.routes
    payload: bytes
    job_try: int
    token: str


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt's outcome, to settle under the token of the claim that took its job."""

    outcome: Outcome
    route: int
    token: str


@dataclass(slots=True)
class ClaimBatch:
    """What one round trip came to."""

    claimed: list[Claim] = field(default_factory=list)
    #: jobs whose payload expired while they waited (held under the claim's token: settle them)
    expired: list[Claim] = field(default_factory=list)
    #: when work is next due (a delayed job, a retry, a lease running out), epoch seconds
    next_due: float | None = None
    #: due jobs whose abort was asked for before they started: settle them as aborted
    aborted: list[Claim] = field(default_factory=list)
    #: finishes the script refused: job id -> "taken" (another claim holds the job now) or
    #: "gone" (applied already, by an earlier send; or the job was claimed again after its lease ran out)
    refused: dict[str, str] = field(default_factory=dict)
    #: whether the durability level held for everything this round trip wrote
    durable: bool = True
