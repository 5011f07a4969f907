"""Security: a password-protected Redis with an ACL user, secrets kept out of logs and CLI output,
argument redaction, and the warning that comes with the pickle serializer."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from children import TESTS, child_env, stop
from click.testing import CliRunner
from redis import asyncio as aioredis

from taskemit import Emitter, listener
from taskemit.cli import cli
from taskemit.engine import InProcessWorker
from taskemit.redact import MASK, redact
from taskemit.settings import Settings
from taskemit.store.redis_server import RedisServer, free_port

PASSWORD = "s3cret-Pa55"


seen: list[str] = []


@listener("login", name="security.audit")
async def audit(user: str, password: str = "", api_token: str = "") -> None:
    seen.append(user)


@listener("login", name="security.reject", max_tries=1)
async def reject(user: str, password: str = "", api_token: str = "") -> None:
    raise PermissionError(f"{user} is locked out")


async def emit_and_run(settings: Settings, user: str) -> None:
    """An event through an emitter and a worker on ``settings``' Redis: the listener saw it."""
    seen.clear()
    async with Emitter([audit], settings) as emitter:
        receipt = await emitter.publish("login", user=user)
    assert receipt is not None
    async with InProcessWorker([audit], settings):
        status = await receipt.wait(timeout=10)
    assert status.status == "complete" and seen == [user]


def test_redact_masks_secret_looking_keys_at_any_depth() -> None:
    value = {"user": "ada", "Password": "x", "nested": [{"api_token": "t", "ok": 1}], "auth": {"secret_key": "k"}}
    assert redact(value, ["password", "token", "secret"]) == {
        "user": "ada",
        "Password": MASK,
        "nested": [{"api_token": MASK, "ok": 1}],
        "auth": {"secret_key": MASK},
    }
    assert redact(value, []) is value


@pytest.fixture
def acl_redis() -> Iterator[RedisServer]:
    # a default user with a password, and an ACL user of our own
    args = ["--requirepass", "admin-only", "--user", "worker", "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    with RedisServer(extra_args=args) as server:
        yield server


async def test_an_acl_user_with_a_password_emits_and_runs_jobs(
    taskemit_settings: Settings, acl_redis: RedisServer
) -> None:
    url = f"redis://worker:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    await emit_and_run(taskemit_settings.model_copy(update={"redis_url": url, "drain_on_exit": False}), "ada")
    anonymous = aioredis.Redis.from_url(f"redis://127.0.0.1:{acl_redis.port}/0")
    try:
        with pytest.raises(Exception, match=r"(?i)auth"):  # the server really wants the password
            await anonymous.ping()
    finally:
        await anonymous.aclose()


async def test_the_password_never_shows_in_worker_logs_or_cli_output(
    taskemit_settings: Settings, acl_redis: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://worker:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    settings = taskemit_settings.model_copy(update={"redis_url": url, "drain_on_exit": False})
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "pool_listeners:Shipping", "--verbose"],
        env=child_env(settings),
        cwd=TESTS,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        await asyncio.sleep(1.5)
        acl_redis.stop()  # the worker logs the outage, naming the Redis
        await asyncio.sleep(2.0)
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 20)
    finally:
        stop(worker)
    text = log.read_text()
    assert "is unavailable" in text and f"redis://worker:***@127.0.0.1:{acl_redis.port}" in text
    assert PASSWORD not in text
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["check"], env={"TASKEMIT_REDIS_URL": url})
    assert result.exit_code == 1 and "cannot reach Redis at redis://worker:***@" in result.output
    assert PASSWORD not in result.output


async def test_dead_letter_arguments_are_redacted_in_the_cli_but_kept_for_replay(
    taskemit_settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with Emitter([reject], settings) as emitter:
        receipt = await emitter.publish("login", user="bob", password="hunter2", api_token="tok-123")
    assert receipt is not None
    async with InProcessWorker([reject], settings):
        await receipt.wait(timeout=10)
    job_id = receipt.jobs[reject.name]
    monkeypatch.setenv("TASKEMIT_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("TASKEMIT_NAMESPACE", settings.namespace)
    shown = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "show", job_id, "--json"])
    data = json.loads(shown.output)
    assert data["arguments"]["kwargs"] == {"user": "bob", "password": MASK, "api_token": MASK}
    table = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "show", job_id])
    assert "hunter2" not in table.output and "tok-123" not in table.output and "bob" in table.output
    monkeypatch.setenv("TASKEMIT_REDACT_KEYS", "token")  # the list is a setting
    only_token = await asyncio.to_thread(CliRunner().invoke, cli, ["dead", "show", job_id, "--json"])
    assert json.loads(only_token.output)["arguments"]["kwargs"]["password"] == "hunter2"
    raw = await redis.hget(settings.keys.dead(job_id), "payload")
    assert raw is not None and b"hunter2" in raw  # Redis keeps the real arguments: a replay needs them


async def test_the_pickle_serializer_warns_at_start(
    taskemit_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = taskemit_settings.model_copy(update={"serializer": "pickle", "drain_on_exit": False})
    with caplog.at_level(logging.WARNING, logger="taskemit"):
        async with Emitter([audit], settings):
            pass
        async with InProcessWorker([audit], settings):
            await asyncio.sleep(0.1)
    warnings = [r.getMessage() for r in caplog.records if 'serializer = "pickle"' in r.getMessage()]
    assert len(warnings) == 2 and "run code" in warnings[0]


def _tls_files(directory: Path) -> dict[str, Path] | None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        return None
    files = {
        name: directory / name for name in ("ca.key", "ca.crt", "server.key", "server.crt", "client.key", "client.crt")
    }
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    commands = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=taskemit-test-ca",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=taskemit-worker",
        ],
        [
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.crt",
            "-days",
            "2",
        ],
    ]
    for command in commands:
        if subprocess.run(["openssl", *command], cwd=directory, capture_output=True).returncode != 0:
            return None
    return files


async def test_tls_with_a_ca_file_and_a_client_certificate(taskemit_settings: Settings, tmp_path: Path) -> None:
    files = _tls_files(tmp_path)
    if files is None:
        pytest.skip("openssl cannot make test certificates here")
    tls_port = free_port()
    args = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(files["server.crt"]),
        "--tls-key-file", str(files["server.key"]),
        "--tls-ca-cert-file", str(files["ca.crt"]),
        "--tls-auth-clients", "yes",
    ]  # fmt: skip
    server = None
    candidates = {shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"}
    for binary in sorted(c for c in candidates if c and Path(c).exists()):
        try:
            server = RedisServer(binary=binary, extra_args=args).start()
            break
        except Exception:  # a redis-server built without TLS refuses the options
            continue
    if server is None:
        pytest.skip("no redis-server here supports TLS")
    try:
        url = (
            f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={files['ca.crt']}"
            f"&ssl_certfile={files['client.crt']}&ssl_keyfile={files['client.key']}"
        )
        await emit_and_run(taskemit_settings.model_copy(update={"redis_url": url, "drain_on_exit": False}), "tls")
        without_cert = aioredis.Redis.from_url(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={files['ca.crt']}")
        try:
            with pytest.raises(Exception):  # noqa: B017 - the server insists on a client certificate
                await without_cert.ping()
        finally:
            await without_cert.aclose()
    finally:
        server.stop()
