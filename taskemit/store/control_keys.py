"""``ControlKeys``: the keys of a namespace's control tag ``{namespace}``, half of ``KeySpace``.

What the whole namespace shares, whichever queue's space builds them: the routes and the
listener catalog, the events' records and indexes, the history, workers, outbox relays and cron.
On a Redis Cluster they sit on the control tag's primary; the queues' keys (``keys.py``) on
their own tags.
"""

from __future__ import annotations

__all__ = ("ControlKeys",)


class ControlKeys:
    """The control tag's keys of the namespace whose control prefix is ``control``."""

    __slots__ = ()
    #: ``{namespace}:`` (set by KeySpace)
    control: str

    @property
    def routes(self) -> str:
        """Hash: listener name -> the queue key its jobs go to, as emitters registered them."""
        return self.control + "routes"

    @property
    def catalog_flow(self) -> str:
        """Hash: listener name -> its newest flow declaration (``<declared at ms>\\n<worker>\\n<JSON>``)."""
        return self.control + "catalog:flow"

    # -- the listener catalog --------------------------------------------------------------

    @property
    def catalog(self) -> str:
        """Hash: listener name -> its description (JSON: events, queue, mode, parameters), as workers register it."""
        return self.control + "catalog"

    @property
    def catalog_seen(self) -> str:
        """Sorted set: listener name -> when a live worker last registered it (ms); old ones are forgotten."""
        return self.control + "catalog:seen"

    @property
    def catalog_live(self) -> str:
        """Sorted set: ``listener\\nworker id`` -> when that registration expires (ms), renewed by heartbeats."""
        return self.control + "catalog:live"

    # -- events ----------------------------------------------------------------------------

    def event(self, event_uuid: str) -> str:
        """Hash with an emitted event's record: event id, time, jobs and their outcomes."""
        return f"{self.control}event:{event_uuid}"

    @property
    def event_prefix(self) -> str:
        """What ``event`` puts before an event uuid (for scripts that name many records)."""
        return self.event("")

    @property
    def events(self) -> str:
        """Sorted set of event uuids scored by emit time (ms), trimmed to the event retention."""
        return self.control + "events"

    def events_by_id(self, event_id: str) -> str:
        """Sorted set of the uuids of one event id's events, scored by emit time (ms)."""
        return f"{self.control}events-by-id:{event_id}"

    @property
    def events_by_id_prefix(self) -> str:
        """What ``events_by_id`` puts before an event id."""
        return self.events_by_id("")

    @property
    def event_counts(self) -> str:
        """Hash of events emitted per event id."""
        return self.control + "stats:events"

    def history(self, resolution: str, bucket: int) -> str:
        """Hash of one time bucket of the history: what the workers counted and sampled from ``bucket``
        (epoch seconds) for one ``resolution`` (``1m``, ``5m``, ``1h``); it expires after the retention."""
        return f"{self.control}history:{resolution}:{bucket}"

    @property
    def history_sampler(self) -> str:
        """String: who samples queue depth and busy workers this interval (expires after it)."""
        return self.control + "history:sampler"

    # -- workers ---------------------------------------------------------------------------

    @property
    def workers(self) -> str:
        """Sorted set of worker ids by the time of their last heartbeat."""
        return self.control + "workers"

    def worker(self, worker_id: str) -> str:
        """Hash with a worker's last heartbeat (expires when the worker stops renewing it)."""
        return f"{self.control}worker:{worker_id}"

    # -- outbox relays ---------------------------------------------------------------------

    @property
    def outbox_relays(self) -> str:
        """Sorted set of outbox relay ids by the time of their last report."""
        return self.control + "outbox:relays"

    def outbox_relay(self, relay_id: str) -> str:
        """Hash with a relay's last report: its database and table, backlog, lag, counts, last error
        (expires when the relay stops reporting)."""
        return f"{self.control}outbox:relay:{relay_id}"

    # -- cron ------------------------------------------------------------------------------

    @property
    def cron_fired(self) -> str:
        """Sorted set: cron schedule name -> its last emitted tick (epoch seconds; only ever raised)."""
        return self.control + "cron:fired"

    @property
    def cron_paused(self) -> str:
        """Hash: paused cron schedule name -> when it was paused (epoch seconds)."""
        return self.control + "cron:paused"

    @property
    def cron_resumed(self) -> str:
        """Sorted set: cron schedule name -> when it was last resumed; earlier ticks are never caught up."""
        return self.control + "cron:resumed"

    @property
    def cron_schedules(self) -> str:
        """Sorted set: cron schedule name -> when a scheduler last registered it (epoch seconds)."""
        return self.control + "cron:schedules"

    def cron_schedule(self, name: str) -> str:
        """Hash: a registered schedule's definition and next tick (forgotten when no scheduler renews it)."""
        return f"{self.control}cron:schedule:{name}"

    @property
    def cron_schedulers(self) -> str:
        """Sorted set: scheduler id -> when it last registered (epoch seconds)."""
        return self.control + "cron:schedulers"

    def cron_scheduler(self, scheduler_id: str) -> str:
        """Hash: a live scheduler's host, pid and schedules (expires unless it renews it)."""
        return f"{self.control}cron:scheduler:{scheduler_id}"

    @property
    def cron_triggers(self) -> str:
        """Hash: request id -> a pending "fire schedule NAME now" request (JSON: name, requested_at)."""
        return self.control + "cron:triggers"

    def cron_trigger_lease(self, request_id: str) -> str:
        """String: the scheduler that took a trigger request; expires, so a crashed taker's request is retaken."""
        return f"{self.control}cron:trigger:{request_id}"

    @property
    def cron_wake(self) -> str:
        """Pub/sub channel on which a trigger wakes the schedulers."""
        return self.control + "cron:wake"
