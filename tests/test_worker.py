"""Worker side: a real arq worker runs each listener with exactly the emitted arguments."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import sys
import threading
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from arq_support import HAVE_ARQ, needs_arq
from redis import asyncio as aioredis

from taskemit import Emitter, ListenerError, MissingExtra, listener, worker_settings
from taskemit.engine import arqpath
from taskemit.engine.heartbeat import HEARTBEAT_INTERVAL
from taskemit.monitor import event_status, job_status
from taskemit.settings import Settings
from taskemit.store.codec import get_codec
from taskemit.testing import InProcessWorker

if HAVE_ARQ:
    from arq.connections import ArqRedis
    from arq.jobs import Job, JobStatus
    from arq.worker import create_worker

calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
thread_names: list[str] = []


@listener("order_placed")
async def record_order(*args: Any, **kwargs: Any) -> str:
    calls.append(("record_order", args, kwargs))
    return "recorded"


@listener("order_placed")
def sync_listener(order_id: int, **kwargs: Any) -> None:
    thread_names.append(threading.current_thread().name)
    calls.append(("sync_listener", (order_id,), kwargs))


@listener("payment_failed", max_tries=1)
async def always_fails(order_id: int) -> None:
    raise ValueError(f"card declined for order {order_id}")


@listener("payment_failed")
async def sibling_ok(order_id: int) -> None:
    calls.append(("sibling_ok", (order_id,), {}))


@listener("slow", timeout=0.2, max_tries=1)
async def too_slow() -> None:
    await asyncio.sleep(5)


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()
    thread_names.clear()


async def test_listener_receives_exactly_the_emitted_arguments(taskemit_settings: Settings) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ident = uuid.uuid4()
    async with Emitter([record_order], taskemit_settings) as emitter:
        emitter.emit(
            "order_placed",
            42,
            "two",
            when=when,
            ident=ident,
            amount=Decimal("9.99"),
            raw=b"\x00\xff",
            nested={"a": [1, {"b": None}]},
            day=dt.date(2026, 1, 2),
        )
    expected_kwargs = {
        "when": when,
        "ident": ident,
        "amount": Decimal("9.99"),
        "raw": b"\x00\xff",
        "nested": {"a": [1, {"b": None}]},
        "day": dt.date(2026, 1, 2),
    }
    assert calls == [("record_order", (42, "two"), expected_kwargs)]
    assert type(calls[0][2]["when"]) is dt.datetime and type(calls[0][2]["day"]) is dt.date


async def test_sync_listener_runs_in_a_thread(taskemit_settings: Settings) -> None:
    async with Emitter([sync_listener], taskemit_settings) as emitter:
        emitter.emit("order_placed", 7, note="x")
    assert calls == [("sync_listener", (7,), {"note": "x"})]
    assert thread_names and thread_names[0] != threading.main_thread().name


async def test_outcomes_are_recorded_on_the_event(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([always_fails, sibling_ok], taskemit_settings) as emitter:
        receipt = await emitter.publish("payment_failed", order_id=5)
    assert receipt is not None
    record = await event_status(redis, taskemit_settings, receipt.event_uuid)
    assert record is not None and record.done
    outcomes = {job.listener: job for job in record.jobs}
    failed = outcomes[always_fails.name]
    assert failed.status == "failed"
    assert failed.error is not None and failed.error["type"] == "builtins.ValueError"
    assert failed.error["message"] == "card declined for order 5"
    assert any("always_fails" in frame for frame in failed.error["where"])
    ok = outcomes[sibling_ok.name]
    assert ok.status == "complete" and ok.duration is not None and ok.duration >= 0
    # each listener is its own job: the sibling ran once, unaffected by the failure
    assert calls == [("sibling_ok", (5,), {})]


@needs_arq
async def test_arqs_job_api_reads_a_failure(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    taskemit_settings = taskemit_settings.model_copy(update={"arq_results": True})  # what arq's Job API reads
    async with Emitter([always_fails], taskemit_settings) as emitter:
        receipt = await emitter.publish("payment_failed", order_id=5)
    assert receipt is not None
    # arq's own result API sees the failure, with the exception readable over JSON
    job = Job(
        receipt.jobs[always_fails.name],
        redis,
        _queue_name=taskemit_settings.queue_key,
        _deserializer=get_codec("json").loads,
    )
    assert await job.status() == JobStatus.complete
    with pytest.raises(ListenerError, match="card declined"):
        await job.result(timeout=1)


async def test_timeout_fails_the_job_with_a_clear_error(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    async with Emitter([too_slow], taskemit_settings) as emitter:
        receipt = await emitter.publish("slow")
    assert receipt is not None
    record = await event_status(redis, taskemit_settings, receipt.event_uuid)
    assert record is not None
    (job,) = record.jobs
    assert job.status == "failed"
    assert job.error is not None and job.error["type"] == "taskemit.errors.ListenerTimeout"
    assert "timed out after 0.2s" in job.error["message"]


async def test_a_job_of_a_listener_the_worker_lacks_stays_queued(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    # deploy skew: the emitter knows a listener the worker does not
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([always_fails, sibling_ok], settings) as emitter:
        receipt = await emitter.publish("payment_failed", order_id=9)
    assert receipt is not None
    async with InProcessWorker([sibling_ok], settings) as worker:
        for _ in range(200):
            if ("sibling_ok", (9,), {}) in calls:
                break
            await asyncio.sleep(0.02)
        assert ("sibling_ok", (9,), {}) in calls
        # waiting, not failed: it is left for a worker that has the listener
        missing = await job_status(redis, settings, receipt.jobs[always_fails.name])
        assert missing.status == "queued"
        assert worker.running
    assert await redis.exists(taskemit_settings.keys.job(receipt.jobs[always_fails.name]))


@needs_arq
async def test_stock_arq_worker_runs_the_jobs(taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([record_order], settings) as emitter:
        emitter.emit("order_placed", 1, via="arq")
    # arq's own Worker class, configured only by the WorkerSettings taskemit generates
    worker = create_worker(
        worker_settings([record_order], settings=settings), burst=True, poll_delay=0.01, handle_signals=False
    )
    await worker.async_run()
    await worker.close()
    assert calls == [("record_order", (1,), {"via": "arq"})]
    assert worker.jobs_complete == 1


def test_worker_settings_shape(taskemit_settings: Settings) -> None:
    # values unlike the defaults, so that a setting worker_settings ignores shows
    settings = taskemit_settings.model_copy(
        update={
            "queue_name": "orders",
            "job_timeout": 42.0,
            "result_retention": 77,
            "job_expiry": 600,
            "poll_delay": 0.3,
            "max_jobs": 7,
            "max_tries": 9,
            "history": False,
        }
    )
    listeners = [record_order, sync_listener, too_slow]
    cls = worker_settings(listeners, settings=settings, max_jobs=3)
    # arq's timeout sits a margin above the listener's own (its policy's, else job_timeout), so the
    # listener's fires first and is recorded as a failed attempt
    margin = cls.job_timeout - settings.job_timeout
    assert 0 < margin <= 60
    # arq's own try limit is out of reach of any policy (max_tries 9 here): the listener's policy rules
    assert cls.max_tries > 10**6
    # the queue, and how long jobs and results are kept
    assert cls.queue_name == settings.queue_key and settings.queue_key.endswith(":queue:orders")
    assert (cls.keep_result, cls.expires_extra_ms, cls.poll_delay) == (77, 600_000, 0.3)
    assert cls.max_jobs == 3  # an arq option given to worker_settings wins over the settings' 7
    # the health-check key `arq --check` reads for this queue, written as often as the heartbeat
    assert cls.health_check_key == settings.keys.health_check("orders") == f"{settings.queue_key}:health-check"
    assert cls.health_check_interval == HEARTBEAT_INTERVAL
    # what taskemit's own commands read back; no cron schedules and no history, so arq's hooks are not set
    assert (cls.taskemit_settings, cls.taskemit_listeners, cls.taskemit_crons) == (settings, tuple(listeners), ())
    assert not hasattr(cls, "on_startup") and not hasattr(cls, "on_shutdown")


@needs_arq
def test_worker_settings_arq_functions_and_redis(taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"job_timeout": 42.0, "result_retention": 77, "max_tries": 9})
    listeners = [record_order, sync_listener, too_slow]
    cls = worker_settings(listeners, settings=settings)
    # one arq function per listener, under the listener's name: the name jobs are enqueued under
    functions = {f.name: f for f in cls.functions}
    assert list(functions) == [record_order.name, sync_listener.name, too_slow.name]
    assert len({id(f.coroutine) for f in cls.functions}) == 3
    assert all(inspect.iscoroutinefunction(f.coroutine) for f in cls.functions)  # sync listeners too
    margin = cls.job_timeout - settings.job_timeout
    assert functions[too_slow.name].timeout_s == pytest.approx(0.2 + margin)
    assert functions[record_order.name].timeout_s == pytest.approx(42.0 + margin)
    assert functions[sync_listener.name].timeout_s == pytest.approx(42.0 + margin)
    for function in cls.functions:
        assert function.max_tries is not None and function.max_tries > 10**6
        assert (function.keep_result_s, function.keep_result_forever) == (77, None)
    url = urlsplit(settings.redis_url)
    database = int(url.path.lstrip("/") or 0)
    redis_settings = cls.redis_settings
    assert (redis_settings.host, redis_settings.port, redis_settings.database) == (url.hostname, url.port, database)


@pytest.fixture
def without_arq(monkeypatch: pytest.MonkeyPatch) -> Any:
    """arq as if it were not installed (where it is not, as it is)."""
    arqpath.arq_installed.cache_clear()
    if HAVE_ARQ:
        monkeypatch.setitem(sys.modules, "arq", None)  # `import arq` raises ImportError
    yield
    arqpath.arq_installed.cache_clear()


async def test_without_arq_taskemits_worker_runs_and_the_stock_path_says_what_to_install(
    taskemit_settings: Settings, without_arq: None
) -> None:
    hooks: list[Any] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        hooks.append(type(ctx["redis"]))

    cls = worker_settings([record_order], settings=taskemit_settings, on_startup=on_startup)
    for name in ("functions", "redis_settings"):
        with pytest.raises(MissingExtra, match=rf"WorkerSettings\.{name} .* pip install 'taskemit\[arq\]'"):
            getattr(cls, name)
    with pytest.raises(MissingExtra, match=r"pip install 'taskemit\[arq\]'"):
        arqpath.arq_redis_settings(taskemit_settings)
    assert cls.queue_name == taskemit_settings.queue_key  # what is not arq's alone is there
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([record_order], settings) as emitter:
        receipt = await emitter.publish("order_placed", 3)
    assert receipt is not None
    async with InProcessWorker([record_order], settings, on_startup=on_startup):
        await receipt.wait(timeout=10)
    assert calls == [("record_order", (3,), {})]
    assert hooks == [aioredis.Redis], "ctx['redis'] is redis-py's own client without arq"


@needs_arq
async def test_with_arq_the_hooks_redis_can_enqueue_arq_jobs(taskemit_settings: Settings) -> None:
    hooks: list[Any] = []
    started = asyncio.Event()

    async def on_startup(ctx: dict[str, Any]) -> None:
        hooks.append(ctx["redis"])
        started.set()

    async with InProcessWorker([record_order], taskemit_settings, on_startup=on_startup):
        await asyncio.wait_for(started.wait(), 10)
    assert isinstance(hooks[0], ArqRedis) and callable(hooks[0].enqueue_job)


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_worker_settings_read_the_jobs_emitters_write(taskemit_settings: Settings, serializer: str) -> None:
    settings = taskemit_settings.model_copy(update={"serializer": serializer})
    cls = worker_settings([record_order], settings=settings)
    codec = get_codec(serializer)
    assert (cls.job_serializer, cls.job_deserializer) == (codec.dumps, codec.loads)
    kwargs = {
        "at": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "amount": Decimal("12.30"),
        "ref": uuid.UUID(int=7),
        "raw": b"\x00\xff",
        "nested": {"items": [1, "two", None]},
    }
    payload = codec.encode_job(record_order.name, (42,), kwargs, enqueue_ms=1_700_000_000_000, job_try=2)
    job = cls.job_deserializer(payload)  # what the worker reads from what an emitter stored
    as_stored = {**job, "a": list(job["a"])}  # JSON reads a tuple back as a list
    assert as_stored == {"t": 2, "f": record_order.name, "a": [42], "k": kwargs, "et": 1_700_000_000_000}
    assert cls.job_deserializer(cls.job_serializer(job)) == job  # and arq's own writes (retries) read back


def test_worker_settings_from_listener_modules(taskemit_settings: Settings) -> None:
    settings = taskemit_settings.model_copy(update={"listeners": ["taskemit.demo.listeners"]})
    cls = worker_settings(settings=settings)
    assert {item.name.rsplit(":", 1)[1] for item in cls.taskemit_listeners} == {
        "send_welcome_email_handler",
        "send_email_handler",
        "send_farewell_email_handler",
        "notify_customer_support",
    }
