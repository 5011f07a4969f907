"""A listener with a retry policy of its own."""

from __future__ import annotations

from taskemit import Attempt, Backoff, listener


class GatewayBusy(Exception):
    """The SMS gateway asked us to come back later."""


class InvalidNumber(Exception):
    """No retry will fix this."""


def send_sms(phone: str, text: str, idempotency_key: str) -> None:
    """Stand-in for your SMS gateway's client."""
    print(f"sms to {phone}: {text}")


@listener(
    "phone_verified",
    max_tries=4,  # the first attempt and up to three retries
    backoff=Backoff.exponential(first=0.5, factor=2.0, cap=60.0),  # 0.5 s, 1 s, 2 s
    retry_on=(GatewayBusy, TimeoutError),
    give_up_on=(InvalidNumber,),
    timeout=10,  # seconds per attempt
)
async def send_confirmation_sms(phone: str, attempt: Attempt) -> None:
    # the same key on every attempt, so the gateway can drop a duplicate
    send_sms(phone, "Your number is verified.", idempotency_key=attempt.idempotency_key)
