"""Emit events without a web framework: `python quickstart_emit.py`."""

from __future__ import annotations

import asyncio

from quickstart import LISTENERS

from taskemit import Emitter, Settings


async def main(settings: Settings | None = None) -> None:
    async with Emitter(LISTENERS, settings) as emitter:
        # emit() returns at once; the jobs are stored in the background
        emitter.emit("user_created", email="ada@example.com")

        # publish() returns once Redis holds the jobs, with their ids
        receipt = await emitter.publish(
            "password_changed", email="ada@example.com", message="Your password was changed."
        )
        print(f"stored event {receipt.event_uuid}: {dict(receipt.jobs)}")
    # leaving the block stores whatever is still buffered


if __name__ == "__main__":
    asyncio.run(main())
