"""Password resets jump the queue of newsletters; a resend the user asked for jumps it further."""

from __future__ import annotations

from taskemit import Emitter, listener

sent: list[str] = []


@listener("newsletter_due")
async def send_newsletter(address: str) -> None:
    sent.append(f"newsletter to {address}")


@listener("password_reset", priority=10)
async def send_reset_link(address: str) -> None:
    sent.append(f"reset link to {address}")


async def resend(emitter: Emitter, address: str) -> None:
    emitter.emit("password_reset", address=address, priority=20)
