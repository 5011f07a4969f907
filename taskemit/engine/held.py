"""Claims held back while a durability level does not hold.

With ``durability = "replicated"`` (or ``"fsync"``) a worker starts a claimed job only once the
round trip that claimed it is durable: a failover to a replica that never saw the claim must not
leave the job running here and claimable there. A claim whose wait did not hold is kept here, and
its jobs start once a renewal of their leases is durable (a lease lost meanwhile, in a failover,
is not started). The worker says so once when the level stops holding, and once when it holds again.
"""

from __future__ import annotations

import logging

from ..settings import Settings
from .batch import JobStore
from .claims import Claim

__all__ = ("HeldClaims",)

logger = logging.getLogger("taskemit.worker")


class HeldClaims:
    """A worker's claimed jobs not started until the durability level holds for their claim."""

    def __init__(self, worker_id: str, settings: Settings) -> None:
        self.worker_id = worker_id
        self.settings = settings
        self.claims: list[Claim] = []
        self._warned = False

    def hold(self, claims: list[Claim]) -> None:
        """Keep ``claims``, whose round trip was not durable."""
        self.claims += claims
        self.not_durable()

    def not_durable(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "worker %s: durability %r does not hold (fewer than %d replicas confirm, or no fsync); claimed jobs "
                "wait to start and finished ones are sent again until it does",
                self.worker_id,
                self.settings.durability,
                self.settings.min_replicas,
            )

    def durable(self) -> None:
        """A round trip was durable."""
        if self._warned:
            self._warned = False
            logger.warning("worker %s: durability %r holds again", self.worker_id, self.settings.durability)

    async def release(self, store: JobStore) -> list[Claim] | None:
        """The held claims to start now, their leases renewed durably (those lost meanwhile left
        out), or None while the level does not hold. Raises what the renewal raises when Redis is away."""
        held = self.claims
        lost, _, durable = await store.renew([(c.job_id, c.route, c.token) for c in held])
        if not durable:
            self.not_durable()
            return None
        self.claims = []
        gone = set(lost)
        return [claim for claim in held if claim.job_id not in gone]
