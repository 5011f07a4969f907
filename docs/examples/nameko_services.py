"""nameko's events example on taskemit: a dispatcher and a handler of each type.

Run each service's workers:   taskemit worker nameko_services:ServiceB
                              taskemit worker nameko_services:ServiceC
Dispatch from anywhere:       python -c "import asyncio, nameko_services as s; asyncio.run(s.edit_foo(42))"
"""

from __future__ import annotations

import asyncio

from taskemit import Emitter, listener, worker_settings


# -- service A: dispatches events; it does not import the handlers' code ----------------------
async def edit_foo(foo_id: int) -> None:
    async with Emitter() as dispatch:  # no listeners: the catalog the live workers register
        await dispatch.publish("service_a.foo_updated", id=foo_id)


# -- service B -------------------------------------------------------------------------------
# SERVICE_POOL (the default): one worker of service B's pool handles each event.
@listener("service_a.foo_updated", name="service_b.bar", queue="service_b")
async def bar(id: int) -> None:
    print(f"service B handled foo {id}")


# BROADCAST: every live worker process of service B drops its cache.
@listener("service_a.config_changed", name="service_b.drop_cache", mode="broadcast", queue="service_b")
async def drop_cache(**config: object) -> None:
    print("service B dropped its cache")


# SINGLETON: of all singleton handlers of the event, whatever their service, one runs it.
@listener("service_a.report_due", name="service_b.report", mode="singleton", queue="service_b")
async def report_b(day: str) -> None:
    print(f"report for {day} by service B")


# -- service C -------------------------------------------------------------------------------
@listener("service_a.report_due", name="service_c.report", mode="singleton", queue="service_c")
async def report_c(day: str) -> None:
    print(f"report for {day} by service C")


# reliable_delivery=False: the event is dropped for this handler while no worker serves it.
@listener("service_a.foo_updated", name="service_c.live_view", reliable_delivery=False, queue="service_c")
async def live_view(id: int) -> None:
    print(f"service C refreshed the live view of foo {id}")


# Each service runs its own pool of workers on one Redis.
ServiceB = worker_settings(listeners=[bar, drop_cache, report_b])
ServiceC = worker_settings(listeners=[report_c, live_view])


if __name__ == "__main__":
    asyncio.run(edit_foo(42))
