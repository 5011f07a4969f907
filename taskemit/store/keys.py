"""``KeySpace``: every Redis key taskemit reads or writes, built in one place.

Every key carries a Redis Cluster hash tag, so that each Lua script's keys hash to one slot,
and several apps can share one Redis by choosing different namespaces:

- the control tag ``{namespace}``: what the whole namespace shares (the catalog, routes,
  workers, cron, history, the events' records and indexes);
- on a Redis Cluster, a queue tag per queue, ``{namespace/queue}`` (``{namespace/queue/k}``
  for shard k > 0 of a listener with ``shards``): the queue, its listeners' ready, leased and
  delayed sets and flow control, its jobs (their ids carry the tag, so arq's keys of a job are
  on it too), their attempts, outcomes and dead letters, its listeners' counters. A queue's
  keys then sit on one node, and the queues spread over the cluster's nodes. On one Redis
  every queue's tag is the control tag: one slot, as it always was.

A ``KeySpace`` for a queue tag (``for_queue``, ``space_of``) builds that tag's keys, and the
control keys as the namespace's does. arq's own keys (job payloads, in-progress markers,
results, try counters) keep arq's fixed prefixes so a stock arq worker and arq's ``Job`` API
see taskemit's jobs as ordinary arq jobs: the tag goes into the queue names and the job ids
instead. How ids are made and read back is ``ids.py`` (``JobIds``), and the control tag's keys
are ``control_keys.py`` (``ControlKeys``): ``KeySpace`` extends both.
"""

from __future__ import annotations

import functools
import re

from redis.crc import key_slot

from ..errors import InvalidArgument
from .arq_format import (
    ABORT_JOBS_SS,
    HEALTH_CHECK_SUFFIX,
    IN_PROGRESS_KEY_PREFIX,
    JOB_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    RETRY_KEY_PREFIX,
)
from .control_keys import ControlKeys
from .ids import ONCE_NAMESPACE, JobIds, random_uuid

__all__ = (
    "DEFAULT_KEYS",
    "DEFAULT_NAMESPACE",
    "MAX_SHARDS",
    "ONCE_NAMESPACE",
    "KeySpace",
    "check_namespace",
    "random_uuid",
    "tag_of",
)

DEFAULT_NAMESPACE = "taskemit"
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is usable in keys and hash tags; else InvalidArgument saying why."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidArgument(
            f"namespace must be 1-64 letters, digits, '_', '.', ':' or '-' and start with a letter or "
            f"digit, got {namespace!r}"
        )
    return namespace


class KeySpace(JobIds, ControlKeys):
    """The keys of one namespace: ``{namespace}:...`` for taskemit's, ``arq:<kind>:{tag}:<id>`` for
    arq's; with ``sharded`` (a Redis Cluster), each queue on a tag of its own (see above)."""

    __slots__ = ("control", "is_control", "namespace", "prefix", "sharded", "tag")

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, *, sharded: bool = False, tag: str | None = None) -> None:
        self.namespace = check_namespace(namespace)
        #: each queue has a tag of its own (a Redis Cluster); else all keys share the control tag
        self.sharded = sharded
        #: what the namespace-wide keys start with: the control tag and ':'
        self.control = "{" + namespace + "}:"
        #: the hash tag of this space's keys: the control tag, or a queue's
        self.tag = tag or "{" + namespace + "}"
        #: what this space's keys and job ids start with
        self.prefix = self.tag + ":"
        #: whether this space's tag is the control tag (always so on one Redis)
        self.is_control = self.tag == self.control[:-1]

    def __repr__(self) -> str:
        if self.tag != self.control[:-1]:
            return f"KeySpace({self.namespace!r}, tag={self.tag!r})"
        return f"KeySpace({self.namespace!r}, sharded=True)" if self.sharded else f"KeySpace({self.namespace!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KeySpace)
            and other.namespace == self.namespace
            and other.tag == self.tag
            and other.sharded == self.sharded
        )

    def __hash__(self) -> int:
        return hash((self.namespace, self.tag))

    # -- tags ------------------------------------------------------------------------------

    @property
    def root(self) -> KeySpace:
        """The namespace's space (the control tag's)."""
        return self if self.is_control else _space(self.namespace, self.sharded, None)

    def queue_tag(self, name: str, shard: int = 0, shards: int = 1) -> str:
        """The hash tag of the queue ``name`` (of its ``shard`` among ``shards``): the control tag
        on one Redis."""
        if not self.sharded:
            return self.control[:-1]
        if not shard:
            return f"{{{self.namespace}/{name}}}"
        return _shard_tag(self.namespace, name, shard, shards)

    def for_queue(self, name: str, shard: int = 0, shards: int = 1) -> KeySpace:
        """The space of the queue ``name``'s tag (of its ``shard`` among ``shards``)."""
        return self.space_of(self.queue_tag(name, shard, shards))

    def space_of(self, key: str) -> KeySpace:
        """The space of the tag ``key`` carries (a key, a job id or a tag of this namespace); this
        namespace's own for a key of no tag of it."""
        if not self.sharded:
            return self if self.is_control else self.root
        tag = tag_of(key)
        if tag is None or not self.owns(tag) or tag == self.control[:-1]:
            return self.root
        return _space(self.namespace, True, tag)

    def prefix_of(self, job_id: str) -> str:
        """What the keys of the job ``job_id`` start with: its tag's prefix."""
        if not self.sharded:
            return self.control
        tag = tag_of(job_id)
        return tag + ":" if tag is not None and self.owns(tag) else self.control

    def owns(self, key: str | bytes) -> bool:
        """True when ``key`` belongs to this namespace: its first hash tag is the namespace's, or
        one of its queues'."""
        text = key.decode() if isinstance(key, bytes) else key
        tag = tag_of(text)
        if tag is None:
            return False
        root = self.control[:-1]
        return tag == root or tag.startswith(root[:-1] + "/")

    def outcomes(self, event_uuid: str) -> str:
        """Hash of the outcomes of the jobs of the event ``event_uuid`` on this tag (``job:<id>`` ->
        JSON): the event's record itself on the control tag, else one of this tag's, which
        ``emit.lua`` makes when it stores the event's jobs here (its field ``stored``)."""
        if self.is_control:
            return self.event(event_uuid)
        return f"{self.prefix}outcome:{event_uuid}"

    # -- queues and jobs (arq's keys) ------------------------------------------------------

    def queue(self, name: str, shard: int = 0, shards: int = 1) -> str:
        """The arq queue (sorted set of job ids scored by run time, ms) called ``name`` (its
        ``shard`` among ``shards``: on a Redis Cluster, a sharded listener's jobs on ``name``
        spread over several)."""
        if not self.sharded:
            return f"{self.control}queue:{name}"
        return f"{self.for_queue(name, shard, shards).prefix}queue:{name}"

    def queue_shards(self, name: str, shards: int = 1) -> list[str]:
        """The keys of the queue ``name`` that a listener with ``shards`` has jobs on: one per shard on
        a Redis Cluster, the one queue elsewhere (where a listener's shards are that queue)."""
        if not self.sharded or shards <= 1:
            return [self.queue(name)]
        return [self.queue(name, shard, shards) for shard in range(shards)]

    def ready(self, queue_key: str, listener: str) -> str:
        """Sorted set of one listener's jobs on the queue ``queue_key`` that no worker holds, by run time (ms).

        taskemit's workers claim from these, so a worker only ever sees jobs it can run; the
        arq queue itself stays complete for stock arq workers and arq's ``Job`` API.
        """
        return f"{queue_key}:ready:{listener}"

    def leased(self, queue_key: str, listener: str) -> str:
        """Sorted set of one listener's claimed jobs on ``queue_key``, by lease expiry (ms)."""
        return f"{queue_key}:leased:{listener}"

    def delayed(self, queue_key: str, listener: str) -> str:
        """Sorted set of one listener's jobs on ``queue_key`` that go to its ready set later, by
        when (ms): a retry of a job with a priority (its ready score is ahead of its run time), a
        job whose rate key has no token, a dead job that holds its ordering key until its dead
        letter expires (flow control, ``lib_flow.lua``)."""
        return f"{queue_key}:delayed:{listener}"

    def wake_channel(self, queue_key: str) -> str:
        """Pub/sub channel on which emits tell the workers of ``queue_key`` which listeners have work."""
        return f"{queue_key}:wake"

    def broadcast_queue(self, queue_key: str, worker_id: str) -> str:
        """One worker's own queue of broadcast jobs beside ``queue_key`` (expires when unused)."""
        return f"{queue_key}:broadcast:{worker_id}"

    # -- flow control (lib_flow.lua) ---------------------------------------------------------
    # A listener's keys hang off ``flow(listener)``, with '@' (no listener name has one) before
    # what each is, so no two listeners' keys can meet.

    def flow(self, listener: str) -> str:
        """Hash: the limits the claim enforces for ``listener`` (the newest declaration: concurrency,
        rate count and period, burst, per key), its token bucket (tokens, at), and whether a claim
        turned a worker away for a limit (wanted)."""
        return f"{self.prefix}flow:{listener}"

    def flow_jobs(self, listener: str) -> str:
        """Hash: job id -> its flow record (priority boost, ordering or rate group, rate key), for
        the jobs of ``listener`` that have one."""
        return self.flow(listener) + "@jobs"

    def flow_keys(self, listener: str) -> str:
        """Sorted set: ordering (or rate) key -> how many of ``listener``'s jobs it has not finished."""
        return self.flow(listener) + "@keys"

    def flow_group_prefix(self, listener: str) -> str:
        """What ``flow_group`` puts before a key (for scripts that name many groups)."""
        return self.flow(listener) + "@key:"

    def flow_group(self, listener: str, key: str) -> str:
        """List: the job ids of one ordering (or rate) key of ``listener``, in emit order; the first
        is ready or running, the others wait."""
        return self.flow_group_prefix(listener) + key

    def flow_bucket_prefix(self, listener: str) -> str:
        """What ``flow_bucket`` puts before a rate key."""
        return self.flow(listener) + "@bucket:"

    def flow_bucket(self, listener: str, key: str) -> str:
        """Hash: the token bucket (tokens, at) of one rate key of ``listener`` (expires once full)."""
        return self.flow_bucket_prefix(listener) + key

    # -- a job's keys (its id carries its queue's tag) ------------------------------------------

    def job_id(self, token: str) -> str:
        """The full job id for ``token``, which may already be one (ids as users type them)."""
        return token if self.owns(token) else self.control + token

    def job(self, job_id: str) -> str:
        """arq's job payload (deleted when the job finishes for good)."""
        return JOB_KEY_PREFIX + job_id

    def in_progress(self, job_id: str) -> str:
        """arq's marker that a worker is running the job: taskemit's lease on it."""
        return IN_PROGRESS_KEY_PREFIX + job_id

    def result(self, job_id: str) -> str:
        """arq's stored result of a finished job."""
        return RESULT_KEY_PREFIX + job_id

    def retry(self, job_id: str) -> str:
        """arq's try counter of a job."""
        return RETRY_KEY_PREFIX + job_id

    @property
    def abort_requests(self) -> str:
        """Sorted set of job ids whose abort was asked for, by when (ms): taskemit's workers read it."""
        return self.prefix + "abort"

    @property
    def arq_abort_requests(self) -> str:
        """arq's own sorted set of abort requests (``Job.abort()``; one for all namespaces, outside
        their slots): taskemit's workers move their namespace's requests to ``abort_requests``."""
        return ABORT_JOBS_SS

    def claim_receipt(self, token: str) -> str:
        """What the claim with ``token`` handed out (kept for a lease): sent again after a lost
        reply, the claim hands out the same jobs."""
        return f"{self.prefix}claim:{token}"

    def write_marker(self, worker_id: str) -> str:
        """A worker's last round trip (a write): a WAIT after it covers everything written before it."""
        return f"{self.prefix}marker:{worker_id}"

    def attempts(self, job_id: str) -> str:
        """List of a job's attempts (JSON each): outcome, error, timings; kept across replays."""
        return f"{self.prefix_of(job_id)}attempts:{job_id}"

    # -- dead letters ----------------------------------------------------------------------

    def dead(self, job_id: str) -> str:
        """Hash with a dead letter: the job's payload, listener, event and attempt history."""
        return f"{self.prefix_of(job_id)}dead:{job_id}"

    @property
    def dead_index(self) -> str:
        """Sorted set of dead-lettered job ids scored by the time they died (ms)."""
        return self.prefix + "dead"

    def dead_by_listener(self, listener: str) -> str:
        return f"{self.prefix}dead-by-listener:{listener}"

    def dead_by_event(self, event_id: str) -> str:
        return f"{self.prefix}dead-by-event:{event_id}"

    # -- counters --------------------------------------------------------------------------

    @property
    def listener_names(self) -> str:
        """Set of listener names that have counters."""
        return self.prefix + "listeners"

    def listener_stats(self, listener: str) -> str:
        """Hash of a listener's counters and duration histogram (see lib_stats.lua)."""
        return f"{self.prefix}stats:listener:{listener}"

    def health_check(self, queue: str) -> str:
        """arq's health-check key of a worker on ``queue`` (what ``arq --check`` reads)."""
        return self.queue(queue) + HEALTH_CHECK_SUFFIX


def tag_of(key: str) -> str | None:
    """The hash tag ``key`` carries (``{...}``, braces included), or None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start : end + 1] if end > start + 1 else None


#: the most hash tags one listener's jobs spread over (``listener(shards=)``)
MAX_SHARDS = 64
#: hash slots of a Redis Cluster
_SLOTS = 16384


@functools.lru_cache(maxsize=4096)
def _shard_tag(namespace: str, name: str, shard: int, shards: int) -> str:
    """The tag of ``shard`` (1 or more) of the queue ``name`` among ``shards``: ``{ns/name/x}``,
    with x the first number from ``shard`` on whose slot is in the ``shard``-th of ``shards``
    equal ranges of slots after the range of shard 0's. A cluster made with ``redis-cli --cluster
    create`` gives each primary an equal range of slots, so the shards of a listener with as many
    shards as primaries sit on different primaries; every process finds the same tags."""
    first = key_slot(f"{{{namespace}/{name}}}".encode()) * shards // _SLOTS
    target = (first + shard) % shards
    x = shard
    while True:
        tag = f"{{{namespace}/{name}/{x}}}"
        if key_slot(tag.encode()) * shards // _SLOTS == target:
            return tag
        x += 1


@functools.lru_cache(maxsize=4096)
def _space(namespace: str, sharded: bool, tag: str | None) -> KeySpace:
    return KeySpace(namespace, sharded=sharded, tag=tag)


#: the keys of the default namespace, for functions that read Redis without settings
DEFAULT_KEYS = KeySpace()
