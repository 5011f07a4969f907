"""taskemit on a real Redis Cluster (three primaries, three replicas, started by tests/topology.py):
the redis+cluster:// URL, a plain URL refused at a cluster node, batches sent node by node and
following MOVED, and the one-node scenarios end to end (fan-out over queues, retries, dead letters
and replay, publish-and-wait, status, cron once per tick with two schedulers, broadcast)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
import test_dashboard as dashboard
import test_deadletter as deadletter
import test_monitor_cli as monitor_cli
import test_monitor_shards as shards
from redis.exceptions import ResponseError
from topology import Cluster, find_redis_server, server_binary, server_version, wait_until

from taskemit import Attempt, Emitter, Retry, cron, listener
from taskemit.emit.listener import Listener
from taskemit.engine import InProcessWorker
from taskemit.errors import InvalidArgument
from taskemit.monitor import event_status
from taskemit.monitor.deadletter import get_dead_letter, replay_dead_letter
from taskemit.schedule.clock import ManualClock
from taskemit.schedule.scheduler import Scheduler
from taskemit.settings import Settings, load_settings
from taskemit.store.cluster import ClusterClient, send_cluster_batch
from taskemit.store.connection import parse_redis_url, redis_client, sync_client

runs: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One cluster for the whole module (it takes a few seconds to form)."""
    binary = server_binary(at_least=(7,), why="for a Redis Cluster with sharded pub/sub")
    with Cluster(binary=binary) as started:
        yield started


@pytest.fixture
def settings(cluster: Cluster, tmp_path: Path) -> Settings:
    return load_settings(
        redis_url=cluster.url(),
        namespace=f"test-{uuid.uuid4().hex[:12]}",
        drain_on_exit=False,
        spool_dir=str(tmp_path / "spool"),
        catalog_refresh=0.1,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Any]:
    async with redis_client(settings) as client:
        yield client


@listener("order_placed", queue="billing")
async def bill(order: int) -> None:
    runs.append(("bill", order))


@listener("order_placed", queue="shipping")
async def ship(order: int, attempt: Attempt) -> None:
    runs.append(("ship", order, attempt.number))
    if attempt.number == 1:
        raise Retry(after=0.1)


@listener("order_placed")
async def confirm(order: int) -> None:
    runs.append(("confirm", order))


@listener("refund", max_tries=1)
async def refund(order: int, attempt: Attempt) -> None:
    runs.append(("refund", order))
    if not runs.count(("refund", order)) > 1:
        raise ValueError("the bank said no")


@listener("cache_flush", mode="broadcast")
async def flush(version: int) -> None:
    runs.append(("flush", version))


@listener("cluster_tick", name="tests.cluster.on_tick")
async def on_tick(tick: dt.datetime) -> None:
    runs.append(("tick", tick))


ORDERS = [bill, ship, confirm]


async def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true after {timeout}s: {runs}"
        await asyncio.sleep(0.02)


# -- the URL and the client --------------------------------------------------------------------


def test_a_cluster_url_names_its_nodes() -> None:
    target = parse_redis_url("rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2/?ssl_ca_certs=/ca.pem")
    assert target.cluster and target.tls and not target.sentinel
    assert target.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379))
    assert (target.username, target.password) == ("app", "s@cret")
    assert target.options == {"ssl_ca_certs": "/ca.pem"}
    with pytest.raises(InvalidArgument, match="only database 0"):
        parse_redis_url("redis+cluster://h:7000/3")
    with pytest.raises(InvalidArgument, match="at least one node"):
        parse_redis_url("redis+cluster:///")


async def test_a_cluster_url_gives_the_cluster_client(settings: Settings) -> None:
    async with redis_client(settings) as client:
        assert isinstance(client, ClusterClient)
        await client.set("{a}x", "1")
        assert len(client.get_primaries()) == 3
    with sync_client(settings) as blocking:
        assert isinstance(blocking, sync_redis.RedisCluster)
        assert blocking.get("{a}x") == b"1"


async def test_a_plain_url_at_a_cluster_node_is_refused_naming_the_cluster_scheme(cluster: Cluster) -> None:
    port = cluster.nodes[0].port
    plain = load_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    async with redis_client(plain) as client:
        with pytest.raises(InvalidArgument, match=rf"redis\+cluster://127.0.0.1:{port}/"):
            await client.ping()
    with sync_client(plain) as blocking, pytest.raises(InvalidArgument, match=r"redis\+cluster://"):
        blocking.ping()
    with pytest.raises(InvalidArgument, match=r"redis\+cluster://"):
        async with Emitter(ORDERS, plain) as emitter:
            await emitter.publish("order_placed", 1)


async def test_a_cluster_older_than_redis_7_is_refused_naming_the_version(tmp_path: Path) -> None:
    old = find_redis_server()
    if server_version(old) >= (7,):
        pytest.skip(f"needs a redis-server older than 7 for this; {old} is {server_version(old)}")
    with Cluster(primaries=1, replicas=0, binary=old) as small:
        settings = load_settings(redis_url=small.url(), spool_dir=str(tmp_path))
        with pytest.raises(InvalidArgument, match=r"needs Redis 7 or newer \(sharded pub/sub\).* runs 6\."):
            async with redis_client(settings) as client:
                await client.ping()


async def test_a_batch_goes_to_the_node_of_each_key_and_its_replies_come_back_in_order(redis: Any) -> None:
    keys = [f"{{tag{n}}}:k" for n in range(12)]
    nodes = {redis.get_node_from_key(key).name for key in keys}
    assert len(nodes) == 3  # the tags spread over the three primaries
    replies = await send_cluster_batch(
        redis, [*(("SET", key, str(n)) for n, key in enumerate(keys)), ("WAIT", 1, 2000)]
    )
    assert replies == [b"OK"] * 12 + [1]  # every node written to has its replica: the least of their answers
    replies = await send_cluster_batch(redis, [("GET", key) for key in keys])
    assert replies == [str(n).encode() for n in range(12)]
    counted, error = await send_cluster_batch(redis, [("INCR", keys[0] + "-n"), ("LPUSH", keys[0], "x")])
    assert counted == 1 and isinstance(error, ResponseError)  # an error reply is returned in its place


async def test_a_batch_follows_moved_after_a_slot_migrates(cluster: Cluster, redis: Any) -> None:
    key = "{moving}:counter"
    await send_cluster_batch(redis, [("SET", key, "1")])
    await migrate_slot(cluster, key)
    # the client still believes the old owner has the slot: MOVED, then the new owner
    (reply,) = await send_cluster_batch(redis, [("INCR", key)])
    assert reply == 2
    # and the client's slot map now names the new owner
    assert redis.nodes_manager.get_node_from_slot(redis.keyslot(key)).port == owner_port(cluster, key)


# -- the one-node scenarios on the cluster ---------------------------------------------------------


async def test_fan_out_over_three_queues_with_a_retry_and_publish_and_wait(settings: Settings, redis: Any) -> None:
    async with Emitter(ORDERS, settings) as emitter:
        receipt = await emitter.publish("order_placed", 7)
    assert receipt is not None
    async with InProcessWorker(ORDERS, settings, queues=["default", "billing", "shipping"]):
        await receipt.wait(timeout=20)
    assert sorted(runs) == [("bill", 7), ("confirm", 7), ("ship", 7, 1), ("ship", 7, 2)]
    status = await event_status(redis, settings, receipt.event_uuid)
    assert status is not None
    assert {job.listener: (job.status, job.attempts) for job in status.jobs} == {
        bill.name: ("complete", 1),
        ship.name: ("complete", 2),
        confirm.name: ("complete", 1),
    }


async def test_a_dead_letter_is_kept_and_replayed(settings: Settings, redis: Any) -> None:
    async with Emitter([refund], settings) as emitter:
        receipt = await emitter.publish("refund", 3)
    assert receipt is not None
    job_id = receipt.jobs[refund.name]
    async with InProcessWorker([refund], settings):
        await until(lambda: runs == [("refund", 3)])
        letter = None
        for _ in range(500):
            if letter := await get_dead_letter(redis, job_id, space=settings.keys):
                break
            await asyncio.sleep(0.02)
        assert letter is not None and letter.error["message"] == "the bank said no"
        assert await replay_dead_letter(redis, settings, job_id) is not None
        await until(lambda: runs == [("refund", 3), ("refund", 3)])
    assert await get_dead_letter(redis, job_id, space=settings.keys) is None


async def test_cron_fires_each_tick_once_with_two_schedulers(settings: Settings, redis: Any) -> None:
    start = dt.datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=dt.UTC)
    clock = ManualClock(start.timestamp())
    schedule = cron("* * * * * *", "cluster_tick", tick_kwarg="tick", name="tests.cluster-every-second")
    async with InProcessWorker([on_tick], settings):
        schedulers = [Scheduler([schedule], [on_tick], settings, clock=clock) for _ in range(2)]
        for scheduler in schedulers:
            await scheduler.start()
        await clock.wait_for_sleepers(2)
        for _ in range(3):
            clock.advance(1.0)
            await clock.wait_for_sleepers(2)
        for scheduler in schedulers:
            await scheduler.stop()
        await until(lambda: len(runs) >= 3)
        await asyncio.sleep(0.3)
    ticks = [start.replace(microsecond=0) + dt.timedelta(seconds=n) for n in (1, 2, 3)]
    assert sorted(tick for _, tick in runs) == ticks


async def test_broadcast_runs_in_every_live_worker(settings: Settings, redis: Any) -> None:
    async with InProcessWorker([flush], settings), InProcessWorker([flush], settings):
        await until_served(redis, settings, flush.name, 2)
        async with Emitter(settings=settings) as dispatcher:  # fans out from the catalog
            await dispatcher.publish("cache_flush", version=1)
        await until(lambda: len(runs) == 2)
    assert runs == [("flush", 1), ("flush", 1)]


async def test_an_emit_wakes_an_idle_worker_by_sharded_pub_sub(cluster: Cluster, settings: Settings) -> None:
    slow_poll = settings.model_copy(update={"idle_poll": 60.0})  # only the wake can start the job in time
    channel = settings.keys.wake_channel(settings.queue_key)
    with sync_redis.Redis(port=owner_port(cluster, channel)) as owner:
        async with InProcessWorker([confirm], slow_poll):
            await until(lambda: owner.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1)
            async with Emitter([confirm], slow_poll) as emitter:
                emitter.emit("order_placed", 5)
                await until(lambda: runs == [("confirm", 5)], timeout=5)
        # the wake went to the slot's node alone (SPUBLISH), not to every node (PUBLISH)
        assert owner.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0) >= 1


# -- monitoring: the one-node tests of the commands, run against the cluster ----------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TASKEMIT_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", settings.namespace)
    return settings


async def test_status_events_and_stats_commands(cli_env: Settings) -> None:
    await monitor_cli.test_status_events_and_stats(cli_env)


async def test_workers_and_check_commands(cli_env: Settings, redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_cli, "release", asyncio.Event())  # one of this test's own event loop
    await monitor_cli.test_workers_heartbeat_and_check(cli_env, redis)


async def test_prometheus_metrics(cli_env: Settings) -> None:
    await monitor_cli.test_prometheus_metrics(cli_env)


async def test_check_reports_the_primary_that_holds_the_namespace(cluster: Cluster, cli_env: Settings) -> None:
    with sync_redis.Redis(port=owner_port(cluster, cli_env.keys.routes)) as owner:
        owner.config_set("maxmemory", 1 << 30)  # only that primary has a limit
        try:
            report = json.loads((await monitor_cli.arun("check", "--json")).output)["redis"]
        finally:
            owner.config_set("maxmemory", 0)
    assert (report["role"], report["connected_replicas"], report["maxmemory"]) == ("primary", 1, 1 << 30)


async def test_check_reports_each_primary_that_holds_a_tag_of_the_namespace(
    cluster: Cluster, cli_env: Settings, redis: Any
) -> None:
    names = queues_on_each_primary(cluster, cli_env.namespace)
    # the queues of the namespace, as emitters register them
    await redis.hset(cli_env.keys.routes, mapping={f"on-{name}": cli_env.keys.queue(name) for name in names})
    control = owner_port(cluster, cli_env.keys.routes)
    victim = next(port for name in names if (port := owner_port(cluster, cli_env.keys.queue(name))) != control)
    with sync_redis.Redis(port=victim) as node:
        node.config_set("maxmemory", 1 << 30)
        node.execute_command("MEMORY", "PURGE")
        used = int(node.info("memory")["used_memory"])
        node.config_set("maxmemory", used + (1 << 16))  # a queue's primary almost full
        try:
            result = await monitor_cli.arun("check", "--json")
        finally:
            node.config_set("maxmemory", 0)
    nodes = json.loads(result.output)["redis"]["nodes"]
    held = {tag for node in nodes for tag in node["tags"]}
    assert {cli_env.keys.for_queue(name).tag for name in names} | {cli_env.keys.tag} <= held
    assert len(nodes) == 3 and all(node["role"] == "primary" for node in nodes)
    assert nodes[0]["tags"][0] == cli_env.keys.tag  # the control tag's primary first
    (warned,) = [node for node in nodes if node["node"].endswith(f":{victim}")]
    assert warned["headroom"] is not None and warned["headroom"] < 0.1
    warnings = json.loads(result.output)["redis"]["warnings"]
    assert any(f":{victim}: memory:" in warning for warning in warnings)


async def test_dead_letter_commands(cli_env: Settings, redis: Any) -> None:
    # (that test's emitter runs its jobs as it closes, as the one-node fixture's settings say)
    await deadletter.test_cli_list_show_replay_purge(cli_env.model_copy(update={"drain_on_exit": True}), redis)


async def test_the_dashboard_api(settings: Settings) -> None:
    from litestar.testing import AsyncTestClient

    for test in (
        dashboard.test_events_page_and_api,
        dashboard.test_replay_all_and_purge_through_the_api,
        dashboard.test_abort_a_waiting_job,
        dashboard.test_listeners_workers_and_queues,
    ):
        dashboard.failing["ship"] = True
        namespace = f"test-{uuid.uuid4().hex[:12]}"  # each on its own, as on one node
        app_settings = settings.model_copy(update={"max_tries": 1, "idle_poll": 0.2, "namespace": namespace})
        async with AsyncTestClient(dashboard.make_app(app_settings)) as client:
            await test(client)


async def test_the_monitor_across_queue_tags(settings: Settings, redis: Any, tmp_path: Path) -> None:
    """The readers and operators on data laid out by hand across the queues' tags (as the emit path
    and the workers lay it out), each queue's keys on the node of its slot."""
    for test in (
        shards.test_event_status_merges_the_outcomes_of_each_queue_tag,
        shards.test_dead_letters_across_queue_tags,
        shards.test_counters_of_one_listener_on_several_tags_are_summed,
        shards.test_flow_limits_go_to_the_queue_tag,
        shards.test_abort_and_queue_depths_on_a_queue_tag,
        shards.test_prometheus_sums_over_queue_tags,
        shards.test_the_dashboard_takes_job_ids_with_a_queue_tag,
        shards.test_ids_typed_without_their_tag_are_found_by_their_keys,
    ):
        own = load_settings(
            redis_url=settings.redis_url,
            namespace=f"test-{uuid.uuid4().hex[:12]}",  # each on its own, as on one node
            drain_on_exit=False,
            spool_dir=str(tmp_path / "spool"),
        )
        assert own.keys.sharded
        await test(own, redis)


# -- failover --------------------------------------------------------------------------------------

load_runs: Counter[int] = Counter()


@listener("cluster_load", max_tries=20)
async def under_load(n: int) -> None:
    load_runs[n] += 1


@pytest.mark.chaos
async def test_a_primary_killed_under_load_loses_nothing_accepted(tmp_path: Path) -> None:
    """SIGKILL the primary that holds the namespace's control tag and its queue's tag while an
    emitter and a worker run; one of its replicas is promoted (cluster-node-timeout 2 s) and both
    follow the new topology. With durability = "replicated", every event publish() accepted runs;
    a job may run twice (its finish was lost with the primary), which is reported."""
    load_runs.clear()
    binary = server_binary(at_least=(7,), why="for a Redis Cluster with sharded pub/sub")
    # two replicas each: the promoted one still has a replica for durability = "replicated"
    with Cluster(replicas=2, binary=binary) as cluster:
        # a namespace whose control tag and default queue's tag sit on one primary: the victim
        namespace = next(
            f"failover-{n}"
            for n in range(1000)
            if owner_port(cluster, f"{{failover-{n}}}") == owner_port(cluster, f"{{failover-{n}/default}}")
        )
        settings = load_settings(
            redis_url=cluster.url(),
            namespace=namespace,
            durability="replicated",
            min_replicas=1,
            lease_ttl=3.0,
            spool_dir=str(tmp_path / "spool"),
            drain_on_exit=False,
        )
        victim_port = owner_port(cluster, settings.keys.routes)
        assert owner_port(cluster, settings.queue_key) == victim_port
        victim = next(node for node in cluster.nodes if node.port == victim_port)
        accepted: list[int] = []
        refused: Counter[str] = Counter()
        killed_at = promoted_at = 0.0
        async with InProcessWorker([under_load], settings), Emitter([under_load], settings) as emitter:
            for n in range(300):
                if n == 100:
                    assert victim._process is not None
                    victim._process.kill()  # SIGKILL: no goodbye to the cluster
                    killed_at = time.monotonic()
                try:
                    if await emitter.publish("cluster_load", n) is not None:
                        accepted.append(n)
                except Exception as exc:  # not accepted: the caller knows, and may send it again
                    refused[type(exc).__name__] += 1
                if (
                    killed_at
                    and not promoted_at
                    and victim_port not in cluster.primary_ports()
                    and (owner_port(cluster, settings.keys.routes) != victim_port)
                ):
                    promoted_at = time.monotonic()
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 60
            while not set(accepted) <= set(load_runs):
                assert time.monotonic() < deadline, f"{len(set(accepted) - set(load_runs))} accepted events never ran"
                await asyncio.sleep(0.1)
        ran_twice = sum(1 for count in load_runs.values() if count > 1)
        print(
            f"\ncluster failover: {len(accepted)} accepted, {dict(refused)} refused, "
            f"{len(set(accepted) - set(load_runs))} lost, {ran_twice} ran twice; "
            f"replica promoted {promoted_at - killed_at:.1f}s after the kill"
        )
        assert promoted_at > 0
        assert len(accepted) > 250


# -- helpers --------------------------------------------------------------------------------------


async def until_served(redis: Any, settings: Settings, name: str, count: int) -> None:
    from taskemit.monitor.catalog import read_catalog

    deadline = time.monotonic() + 20
    while True:
        entry = (await read_catalog(redis, space=settings.keys)).get(name)
        if entry is not None and len(entry.workers) >= count:
            return
        assert time.monotonic() < deadline, f"{name}: {entry and entry.workers}"
        await asyncio.sleep(0.05)


def _node_clients(cluster: Cluster) -> list[sync_redis.Redis]:
    return [sync_redis.Redis(port=port, decode_responses=True) for port in cluster.primary_ports()]


def owner_port(cluster: Cluster, key: str) -> int:
    """The port of the primary that holds ``key``'s slot (CLUSTER KEYSLOT, CLUSTER SLOTS)."""
    with sync_redis.Redis(port=cluster.primary_ports()[0], decode_responses=True) as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", key)
        for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    raise AssertionError(f"no node holds the slot of {key}")


async def migrate_slot(cluster: Cluster, key: str) -> None:
    """Move ``key``'s slot (and its keys) to another primary, as ``redis-cli --cluster reshard`` does."""
    source_port = owner_port(cluster, key)
    clients = {c.connection_pool.connection_kwargs["port"]: c for c in _node_clients(cluster)}
    source = clients[source_port]
    target_port = next(port for port in clients if port != source_port)
    target = clients[target_port]
    slot = source.execute_command("CLUSTER", "KEYSLOT", key)
    source_id, target_id = source.execute_command("CLUSTER", "MYID"), target.execute_command("CLUSTER", "MYID")
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    for client in clients.values():
        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    wait_until(lambda: owner_port(cluster, key) == target_port, what="the slot's new owner to be known")
    for client in clients.values():
        client.close()


# -- a tag per queue, and a listener's shards ---------------------------------------------------

spread_runs: list[tuple[str, int]] = []


async def _spread(n: int, attempt: Attempt) -> None:
    spread_runs.append((attempt.listener, n))


def queues_on_each_primary(cluster: Cluster, namespace: str) -> list[str]:
    """Three queue names whose tags ({namespace/name}) sit on three different primaries."""
    chosen: dict[int, str] = {}
    for i in range(500):
        name = f"q{i}"
        chosen.setdefault(owner_port(cluster, f"{{{namespace}/{name}}}"), name)
        if len(chosen) == 3:
            return list(chosen.values())
    raise AssertionError(f"no three queues of {namespace} on three primaries")


def keys_by_node(cluster: Cluster, namespace: str) -> dict[int, list[str]]:
    """Each primary's keys of ``namespace`` (its tags: {ns} and {ns/...})."""
    found = {}
    for client in _node_clients(cluster):
        with client:
            port = client.connection_pool.connection_kwargs["port"]
            found[port] = [key for key in client.keys("*") if f"{{{namespace}" in key]
    return found


async def test_each_queue_has_its_keys_on_its_own_primary(cluster: Cluster, settings: Settings, redis: Any) -> None:
    spread_runs.clear()
    names = queues_on_each_primary(cluster, settings.namespace)
    listeners = [Listener(_spread, ["spread"], name=f"spread-{name}", queue=name) for name in names]
    async with Emitter(listeners, settings) as emitter:
        receipts = [await emitter.publish("spread", n=n) for n in range(10)]
    stored = keys_by_node(cluster, settings.namespace)
    ports = {name: owner_port(cluster, settings.keys.queue(name)) for name in names}
    assert len(set(ports.values())) == 3
    for name, port in ports.items():
        tag = f"{{{settings.namespace}/{name}}}"
        on_it = [key for key in stored[port] if tag in key]
        elsewhere = [key for other, keys in stored.items() if other != port for key in keys if tag in key]
        assert elsewhere == []
        # the queue, the listener's ready set, each job's payload and the events' outcome hashes
        assert settings.keys.queue(name) in on_it
        assert settings.keys.ready(settings.keys.queue(name), f"spread-{name}") in on_it
        assert len([key for key in on_it if key.startswith("arq:job:")]) == 10
        assert len([key for key in on_it if ":outcome:" in key]) == 10
    control = owner_port(cluster, settings.keys.events)
    assert settings.keys.events in stored[control]
    assert len([key for key in stored[control] if key.startswith(settings.keys.event(""))]) == 10
    async with InProcessWorker(listeners, settings):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=20)
    assert sorted(spread_runs) == sorted((f"spread-{name}", n) for name in names for n in range(10))
    status = await event_status(redis, settings, receipts[0].event_uuid)  # type: ignore[union-attr]
    assert status is not None
    assert {job.listener: job.status for job in status.jobs} == {f"spread-{name}": "complete" for name in names}
    after = keys_by_node(cluster, settings.namespace)
    for name, port in ports.items():  # finished: the jobs' keys are gone from their primary
        assert not [key for key in after[port] if key.startswith(f"arq:job:{{{settings.namespace}/{name}}}")]


async def test_a_listener_with_three_shards_has_keys_on_all_three_primaries(
    cluster: Cluster, settings: Settings, redis: Any
) -> None:
    spread_runs.clear()
    hot = Listener(_spread, ["hot"], name="hot", queue="hot", shards=3)
    async with Emitter([hot], settings) as emitter:
        receipts = [await emitter.publish("hot", n=n) for n in range(30)]
    queues = [settings.keys.queue("hot", shard, 3) for shard in range(3)]
    ports = {owner_port(cluster, queue) for queue in queues}
    assert len(ports) == 3  # its shards' tags spread over the slot ranges of the three primaries
    stored = keys_by_node(cluster, settings.namespace)
    for queue in queues:
        port = owner_port(cluster, queue)
        ready = settings.keys.ready(queue, "hot")
        assert ready in stored[port]
        assert await redis.zcard(ready) == 10  # the emits take the shards in turns
    async with InProcessWorker([hot], settings):
        for receipt in receipts:
            assert receipt is not None
            await receipt.wait(timeout=20)
    assert sorted(n for _, n in spread_runs) == list(range(30))  # each once


async def test_fsync_durability_waits_for_the_aof_of_each_primary_a_batch_wrote(
    cluster: Cluster, settings: Settings
) -> None:
    """durability = "fsync" on a cluster: WAITAOF goes to every primary an emit wrote to (the control
    tag's and each queue tag's); one primary without an AOF makes publish raise NotDurable."""
    from taskemit.errors import NotDurable

    names = queues_on_each_primary(cluster, settings.namespace)
    listeners = [Listener(_spread, ["spread"], name=f"spread-{name}", queue=name) for name in names]
    fsync = settings.model_copy(update={"durability": "fsync", "min_replicas": 0, "durability_timeout": 1.0})
    primaries = _node_clients(cluster)
    try:
        for node in primaries:
            node.config_set("appendonly", "yes")
        wait_until(lambda: all(int(node.info("persistence")["aof_enabled"]) for node in primaries), what="AOF on")
        wait_until(
            lambda: not any(int(node.info("persistence")["aof_rewrite_in_progress"]) for node in primaries),
            what="the first AOF rewrites",
        )
        async with Emitter(listeners, fsync) as emitter:
            assert await emitter.publish("spread", n=1) is not None  # every primary's AOF has it
            control = owner_port(cluster, fsync.keys.routes)
            without = next(p for name in names if (p := owner_port(cluster, fsync.keys.queue(name))) != control)
            (node,) = [n for n in primaries if n.connection_pool.connection_kwargs["port"] == without]
            node.config_set("appendonly", "no")  # one queue's primary: its part cannot be fsynced
            with pytest.raises(NotDurable):
                await emitter.publish("spread", n=2, timeout=3)
            node.config_set("appendonly", "yes")  # back: the emitter confirms the event as it closes
            wait_until(lambda: int(node.info("persistence")["aof_enabled"]), what="AOF on again")
    finally:
        for node in primaries:
            node.config_set("appendonly", "no")
            node.close()
