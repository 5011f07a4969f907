"""What each Redis error means (store/faults.py), for the errors as redis-py hands them over: raised
for a top-level error reply, or as an object inside a script's reply array; and the worker's and
``taskemit check``'s side of two of them, on real servers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from proxy import TcpProxy
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from topology import replica_of

from taskemit import Emitter, listener
from taskemit.cli import cli
from taskemit.engine import InProcessWorker
from taskemit.settings import load_settings
from taskemit.store.connection import redis_client
from taskemit.store.faults import Fault, NotPrimary, RedisNotReady, fault_of, is_transient
from taskemit.store.redis_server import RedisServer

REPLIES = {
    "OOM command not allowed when used memory > 'maxmemory'.": Fault.BUSY,
    "LOADING Redis is loading the dataset in memory": Fault.LOST,  # redis-py: a ConnectionError
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.": Fault.BUSY,
    "TRYAGAIN Multiple keys request during rehashing of slot": Fault.BUSY,
    "NOREPLICAS Not enough good replicas to write.": Fault.BUSY,
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.": Fault.BUSY,
    "CLUSTERDOWN The cluster is down": Fault.BUSY,
    "READONLY You can't write against a read only replica.": Fault.ROLE,
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.": Fault.ROLE,
    "MOVED 3999 127.0.0.1:6381": Fault.ROLE,
    "ASK 3999 127.0.0.1:6381": Fault.ROLE,
    "NOSCRIPT No matching script. Please use EVAL.": Fault.NOSCRIPT,
    "WRONGTYPE Operation against a key holding the wrong kind of value": Fault.BAD,
    "ERR wrong number of arguments for 'zadd' command": Fault.BAD,
    # a redis.call that failed inside a script, as Redis 6 and 7 report it
    "ERR Error running script (call to f_1a2b): @user_script:12: @user_script: 12: -OOM command not allowed": (
        Fault.BUSY
    ),
    "OOM command not allowed when used memory > 'maxmemory'. script: 1a2b, on @user_script:12.": Fault.BUSY,
    "ERR user_script:3: Script attempted to access nonexistent global variable 'x' script: 1a2b": Fault.BAD,
}


@pytest.mark.parametrize("reply", REPLIES)
def test_every_error_reply_has_its_outcome(reply: str) -> None:
    error = BaseParser.parse_error(reply)
    assert fault_of(error) is REPLIES[reply]
    assert is_transient(error) is (REPLIES[reply] is not Fault.BAD)


@pytest.mark.parametrize("error", [RedisConnectionError("reset"), RedisTimeoutError("slow"), OSError(104, "reset")])
def test_a_lost_connection_may_have_run(error: BaseException) -> None:
    assert fault_of(error) is Fault.LOST
    assert fault_of(RedisNotReady(BaseParser.parse_error("READONLY x"), Fault.ROLE)) is Fault.ROLE


def test_errors_inside_a_scripts_reply_are_classified_like_raised_ones() -> None:
    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        client.set("a-string", "x")
        script = "return {redis.pcall('ZADD', KEYS[1], 1, 'm')}"
        (wrong_type,) = client.eval(script, 1, "a-string")
        assert fault_of(wrong_type) is Fault.BAD  # WRONGTYPE: proves the call bad
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1024)
        (out_of_memory,) = client.eval(script, 1, "a-sorted-set")
        assert fault_of(out_of_memory) is Fault.BUSY  # OOM: the first write of new data is refused


@listener("probe_fault")
async def counted(n: int) -> None:
    ran.append(n)


ran: list[int] = []


async def test_a_worker_waits_out_too_few_replicas_and_runs_each_job_once(tmp_path: Path) -> None:
    ran.clear()
    with RedisServer() as server:
        settings = load_settings(redis_url=server.url, namespace="f", spool_dir=str(tmp_path), lease_ttl=3.0)
        async with Emitter([counted], settings) as emitter:
            for n in range(30):
                await emitter.publish("probe_fault", n)
        client = redis.Redis(port=server.port)
        client.config_set("min-replicas-to-write", 1)  # every script's first write: NOREPLICAS
        async with InProcessWorker([counted], settings) as worker:
            await asyncio.sleep(1.5)
            assert ran == [] and worker.engine.link.down_since is not None
            client.config_set("min-replicas-to-write", 0)
            deadline = time.monotonic() + 20
            while client.zcard(settings.queue_key):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert sorted(ran) == list(range(30))


def test_check_refuses_a_replica_and_reports_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with RedisServer() as primary:
        replica = replica_of(primary)
        try:
            monkeypatch.chdir(tmp_path)
            monkeypatch.setenv("TASKEMIT_REDIS_URL", replica.url)
            result = CliRunner().invoke(cli, ["check", "--json"])
            assert result.exit_code == 1
            report = json.loads(result.output)
            assert report["redis"]["role"] == "replica" and not report["ok"]
            assert any("READONLY" in problem for problem in report["redis"]["problems"])
            monkeypatch.setenv("TASKEMIT_REDIS_URL", primary.url)
            monkeypatch.setenv("TASKEMIT_DURABILITY", "replicated")
            monkeypatch.setenv("TASKEMIT_MIN_REPLICAS", "2")
            result = CliRunner().invoke(cli, ["check"])
            assert "primary, 1 replica(s) connected" in result.output
            assert 'durability = "replicated" needs 2 connected replica(s); 1 are' in result.output
            assert result.exit_code == 1
        finally:
            replica.stop()


async def test_any_client_leaves_a_demoted_primary_for_whatever_the_name_points_at_now(tmp_path: Path) -> None:
    """Every client taskemit makes (schedulers, the dashboard, heartbeats...) closes a connection
    whose server answers READONLY, so its next call reaches the new primary."""
    with RedisServer() as old, RedisServer() as new, TcpProxy(old.port) as endpoint:
        settings = load_settings(redis_url=f"redis://127.0.0.1:{endpoint.port}/0", spool_dir=str(tmp_path))
        async with redis_client(settings) as client:
            await client.set("k", "before")
            redis.Redis(port=old.port).replicaof("127.0.0.1", new.port)
            endpoint.retarget(new.port)
            with pytest.raises(NotPrimary) as raised:
                await client.set("k", "after")
            assert fault_of(raised.value) is Fault.ROLE
            await client.set("k", "after")  # a new connection, through the name, to the new primary
        assert redis.Redis(port=new.port).get("k") == b"after"
