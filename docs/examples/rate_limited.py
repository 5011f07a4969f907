"""A listener that waits as long as the API asks, and is safe to run twice."""

from __future__ import annotations

from taskemit import Attempt, Backoff, Retry, listener


class RateLimited(Exception):
    """The billing API answered 429 Too Many Requests."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after:g} s")
        self.retry_after = retry_after


def push_invoice(invoice_id: str, idempotency_key: str) -> None:
    """Stand-in for your billing API's client."""
    print(f"pushed invoice {invoice_id}")


@listener("invoice_issued", max_tries=6, backoff=Backoff.exponential(first=5, cap=600, jitter="full"))
async def sync_invoice(invoice_id: str, attempt: Attempt) -> None:
    try:
        # the API stores the invoice once per key, however often this attempt is repeated
        push_invoice(invoice_id, idempotency_key=attempt.idempotency_key)
    except RateLimited as exc:
        if attempt.is_last:
            raise  # no tries left: the dead letter shows RateLimited, not Retry
        raise Retry(after=exc.retry_after, reason=str(exc)) from exc
