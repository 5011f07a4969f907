"""The documentation: examples shown in docs/ are the files in docs/examples/, and they work.

Each fenced block preceded by ``<!-- example: docs/examples/NAME -->`` must equal that file, and
each ``<!-- output: docs/examples/NAME -->`` block must be what running that example prints.
Each ``<!-- capture: docs/captures/NAME.txt -->`` block must equal that file, a terminal capture
written by docs/examples/monitoring_captures.py; ids and times differ on every run, so the
captures are checked for their structure (headers, rows, statuses) instead, fresh and as shown.
The examples run here against a real Redis (the taskemit pytest plugin's fixtures), through the
same entry points the pages tell readers to use: ``Emitter``, Litestar's test client, the
``taskemit worker`` and ``arq`` commands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from arq_support import HAVE_ARQ, needs_arq
from children import PROTOCOL_ENV
from pydantic import ValidationError
from redis import asyncio as aioredis

from taskemit import (
    Attempt,
    Backoff,
    Emitter,
    ListenerArgumentError,
    ListenerConfigError,
    ListenerError,
    PayloadEncodeError,
    Retry,
    Settings,
    UnknownEventError,
    listener,
    load_settings,
    worker_settings,
)
from taskemit.engine import InProcessWorker
from taskemit.monitor.deadletter import get_dead_letter, iter_dead_letters
from taskemit.store.arq_format import ArqResult, decode_result
from taskemit.store.redis_server import RedisServer

if HAVE_ARQ:
    from arq.worker import create_worker

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.md"))

_TAGGED = re.compile(
    r"<!--\s*(?P<kind>example|output):\s*(?P<path>\S+)\s*-->[ \t]*\n(?:[ \t]*\n)*"
    r"```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$",
    re.S | re.M,
)
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
#: lines an untagged ```python block may have; anything longer belongs in docs/examples/
_MAX_UNTAGGED_LINES = 5

#: every example file, and the tests below that run it
RUN_BY = {
    "quickstart.py": "test_quickstart_*, test_taskemit_worker_*, test_arq_command_*, test_deploy_skew_*",
    "quickstart_emit.py": "test_quickstart_*, test_taskemit_worker_*, test_arq_command_*",
    "litestar_app.py": "test_litestar_app_*",
    "mismatched_arguments.py": "test_mismatched_arguments_*",
    "litestar_listener.py": "test_litestar_listener_*",
    "payloads.py": "test_payloads_*",
    "retries.py": "test_retries_*",
    "backoff_chart.py": "test_backoff_chart_*",
    "rate_limited.py": "test_rate_limited_*",
    "dead_letters.py": "test_dead_letters_*",
    "monitoring_captures.py": "test_monitoring_captures_*",
    "settings.toml": "test_settings_example_*",
    "testing_example.py": "test_testing_example_passes",
    "lihil_todo.py": "test_lihil_todo_*",
    "nameko_services.py": "test_nameko_services_*",
    "litestar_plugin.py": "test_litestar_plugin_*",
    "transactions_app.py": "test_each_committed_signup_*, test_the_sync_config_*, test_events_committed_before_a_*",
    "flow_concurrency.py": "test_flow_concurrency_*",
    "flow_rate.py": "test_flow_rate_*",
    "flow_ordering.py": "test_flow_ordering_*",
    "flow_priority.py": "test_flow_priority_*",
}
#: examples whose documented output is compared with what they print
OUTPUT_CHECKED = {"mismatched_arguments.py", "payloads.py", "backoff_chart.py"}


def _tagged(kind: str) -> list[tuple[Path, str, str, str]]:
    found = []
    for page in PAGES:
        for match in _TAGGED.finditer(page.read_text(encoding="utf-8")):
            if match["kind"] == kind:
                found.append((page, match["path"], match["lang"], match["body"]))
    return found


def documented_output(example: str) -> str:
    blocks = [body for _, path, _, body in _tagged("output") if Path(path).name == example]
    assert len(blocks) == 1, f"expected one output block for {example}, found {len(blocks)}"
    return blocks[0]


# -- the pages and the files agree --------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "path", "lang", "body"),
    _tagged("example"),
    ids=[f"{page.name}:{Path(path).name}" for page, path, _, _ in _tagged("example")],
)
def test_example_block_is_the_file(page: Path, path: str, lang: str, body: str) -> None:
    file = ROOT / path
    assert file.parent == EXAMPLES, f"{page.name}: {path} is not in docs/examples/"
    assert file.is_file(), f"{page.name} shows {path}, which does not exist"
    assert lang == {".py": "python", ".toml": "toml"}[file.suffix]
    assert body == file.read_text(encoding="utf-8"), f"{page.name}: the block for {path} differs from the file"


def test_every_example_is_shown_and_run() -> None:
    files = {p.name for p in EXAMPLES.iterdir() if p.is_file()}
    shown = {Path(path).name for _, path, _, _ in _tagged("example")}
    assert files == shown, "every file in docs/examples/ must be shown on a page, and vice versa"
    assert files == set(RUN_BY), "every file in docs/examples/ must be run by a test"
    tests = [name for name in globals() if name.startswith("test_")]
    for more in (
        "test_docs_seeds.py",
        "test_plugin_docs.py",
        "test_outbox_litestar.py",
        "test_outbox_processes.py",
        "test_flow_docs.py",
    ):
        tests += re.findall(r"^(?:async )?def (test_\w+)", (ROOT / "tests" / more).read_text(), re.M)
    for example, patterns in RUN_BY.items():
        for pattern in patterns.split(", "):
            assert fnmatch.filter(tests, pattern), f"no test matches {pattern!r} (for {example})"
    assert {Path(path).name for _, path, _, _ in _tagged("output")} == OUTPUT_CHECKED


def test_long_python_blocks_are_examples() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        tagged_bodies = {m["body"] for m in _TAGGED.finditer(text)}
        for match in _FENCE.finditer(text):
            if match["lang"] == "python" and match["body"] not in tagged_bodies:
                lines = match["body"].count("\n")
                assert lines <= _MAX_UNTAGGED_LINES, (
                    f"{page.name}: a {lines}-line python block is not an example file; "
                    "move it to docs/examples/ and tag it"
                )


CAPTURES = DOCS / "captures"
_CAPTURE = re.compile(
    r"<!--\s*capture:\s*(?P<path>\S+)\s*-->[ \t]*\n(?:[ \t]*\n)*```text\n(?P<body>.*?)^```[ \t]*$", re.S | re.M
)
#: a sparkline: block characters, blanks (no sample) inside
_SPARK = "[\u2581-\u2588](?:[\u2581-\u2588 ]*[\u2581-\u2588])?"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_JOB = r"\{[\w-]+\}:[0-9a-f]{32}"
_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
_MS = _TIME + r"\.\d{3}"
_RATE = r"\d+\.\d\d"
_DURATION = r"\d+(?:\.\d)? m?s"
_REFUSED = r"builtins\.ConnectionRefusedError: acme API refused the connection"
_ATTEMPT_ROWS = "".join(
    rf" {n} failed {_TIME} \d+ ms \S+ {_REFUSED} (?:\S*taskemit/\S+\.py:\d+ in \w+ )*"
    r"\S*monitoring_captures\.py:\d+ in notify_carrier"
    for n in (1, 2, 3)
)
_PLACED_ROW = rf"{_MS} order_placed {_UUID} complete send_receipt=complete, update_crm=complete"
_SHIPPED_ROW = rf"{_MS} order_shipped {_UUID} failed notify_carrier=failed"
_JOB_HEADER = "listener job id status tries started took worker outcome"
#: what each capture of docs/captures/ shows, as a regex over its text with the table borders
#: removed and the white space collapsed (so that the width of the host name does not matter)
CAPTURE_VIEWS: dict[str, str] = {
    "status_event": (
        rf"\$ taskemit status (?P<uuid>{_UUID}) Event order_placed (?P=uuid) emitted {_MS}: retrying {_JOB_HEADER}"
        rf" shop:send_receipt {_JOB} complete 1/5 {_MS} \d+ ms \S+ receipt for order 1001 sent to ada@example\.com"
        rf" shop:update_crm {_JOB} retrying 1/3 {_MS} \d+ ms \S+ builtins\.ConnectionError: crm\.internal:"
        rf" connection reset by peer \(next attempt {_MS}\)"
    ),
    "status_job": (
        rf"\$ taskemit status (?P<job>{_JOB}) Job (?P=job) of event {_UUID} {_JOB_HEADER}"
        rf" shop:notify_carrier (?P=job) failed 3/3 {_MS} \d+ ms \S+ {_REFUSED}"
    ),
    "events": (
        r"\$ taskemit events Events emitted event uuid status jobs"
        rf" {_MS} order_placed {_UUID} queued send_receipt=queued, update_crm=queued"
        rf"(?=(?:.(?!order_shipped))*{_SHIPPED_ROW}(?:.(?!order_shipped))*$)"  # the failed event once
        rf"(?: (?:{_PLACED_ROW}|{_SHIPPED_ROW})){{3}}"
    ),
    "events_failed": rf"\$ taskemit events --status failed Events emitted event uuid status jobs {_SHIPPED_ROW}",
    "stats": (
        r"\$ taskemit stats Queue queue queued deferred in progress live workers shop:orders 2 0 0 0"
        r" History \(last hour, a character per minute; UTC\) trend now peak"
        + "".join(
            rf" {title} {_SPARK} {value} {value}"
            for title, value in (
                ("completed/s", _RATE),
                ("failed/s", _RATE),
                ("queued", r"2\.0"),  # sampled by the command itself: the two queued jobs wait for a worker
                ("waiting for a worker", r"2\.0"),
                ("busy slots", r"\d+\.\d"),
                ("live workers", r"\d+\.\d"),
                ("run time p95", _DURATION),
                ("emit to start p95", _DURATION),
            )
        )
        + r" Listeners listener succeeded failed retried dead running ok/s failed/s p50 p95 attempts"
        + "".join(
            rf" shop:{name} {counts} 0 {_RATE} {_RATE} {_DURATION} {_DURATION} {_SPARK}"
            for name, counts in (("notify_carrier", "0 3 2 1"), ("send_receipt", "2 0 0 0"), ("update_crm", "2 2 2 0"))
        )
    ),
    "workers": (
        r"\$ taskemit workers Workers worker host pid queue running complete failed retried up since last seen"
        r" redis outages"
        rf" (?P<host>\S+):(?P<pid>\d+):[0-9a-f]{{6}} (?P=host) (?P=pid) shop:orders \d+ \d+ \d+ \d+ {_MS}"
        r" \d+\.\d s ago 0"
    ),
    "dead_list": (
        r"\$ taskemit dead list Dead letters job id listener event died tries reason last error"
        rf" {_JOB} shop:notify_carrier order_shipped {_TIME} 3 attempts exhausted {_REFUSED}"
    ),
    "dead_show": (
        rf"\$ taskemit dead show (?P<job>{_JOB}) job_id: (?P=job) listener: shop:notify_carrier"
        rf" event_id: order_shipped event_uuid: {_UUID} reason: attempts exhausted"
        r" arguments: \{'args': \[\], 'kwargs': \{'order_id': 1001, 'carrier': 'acme'\}\}"
        rf" enqueued: {_TIME} died: {_TIME} Attempts # status started took worker error" + _ATTEMPT_ROWS
    ),
    "check": (
        r"\$ taskemit check redis [\d.]+ at redis://\S+: primary, 0 replica\(s\) connected, no maxmemory, durability"
        r" memory ok: 1 live worker\(s\) on shop:orders \$ echo \$\? 0"
        r" \$ taskemit check redis [\d.]+ at redis://\S+: primary, 0 replica\(s\) connected, no maxmemory, durability"
        r" memory no worker heartbeat on shop:orders in the last 15s \$ echo \$\? 1"
    ),
    "metrics": (
        r"# HELP taskemit_events_emitted_total .*"
        r' taskemit_events_emitted_total\{event="order_placed"\} 2\.0'
        r' taskemit_events_emitted_total\{event="order_shipped"\} 1\.0'
        r'.* taskemit_listener_attempts_total\{listener="shop:notify_carrier",outcome="dead"\} 1\.0'
        r'.* taskemit_listener_attempts_total\{listener="shop:update_crm",outcome="retried"\} 2\.0'
        r'.* taskemit_listener_duration_seconds_count\{listener="shop:update_crm"\} 4\.0'
        r".* taskemit_dead_letters 1\.0"
        r'.* taskemit_worker_up\{worker="[^"]+"\} 1\.0 .*'
    ),
}


def check_capture(name: str, text: str) -> None:
    flat = re.sub(r"\s+", " ", re.sub(r"[\u2500-\u257f]", " ", text)).strip()
    assert re.fullmatch(CAPTURE_VIEWS[name], flat), f"capture {name} does not show what it should:\n{text}"


def _shown_captures() -> dict[str, str]:
    shown: dict[str, str] = {}
    for match in _CAPTURE.finditer((DOCS / "monitoring.md").read_text(encoding="utf-8")):
        path = ROOT / match["path"]
        assert path.parent == CAPTURES and path.suffix == ".txt", f"{match['path']} is not in docs/captures/"
        assert path.stem not in shown, f"{path.name} is shown twice"
        shown[path.stem] = match["body"]
    return shown


def test_monitoring_captures_on_the_page_are_the_files() -> None:
    shown = _shown_captures()
    assert set(shown) == set(CAPTURE_VIEWS), "docs/monitoring.md must show a capture of every view"
    assert {p.stem for p in CAPTURES.glob("*")} == set(CAPTURE_VIEWS), "docs/captures/ has one file per view"
    for name, body in shown.items():
        assert body == (CAPTURES / f"{name}.txt").read_text(encoding="utf-8"), (
            f"the block for {name}.txt differs from the file: after running monitoring_captures.py, "
            "copy each capture into its block on the page"
        )
        check_capture(name, body)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in PAGES:
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"{page.name} was not built"
    # the API reference, generated from the docstrings, documents the public API
    reference = {
        "emit": ["taskemit.Emitter", "taskemit.listener", "taskemit.Attempt", "taskemit.Retry"],
        "policy": ["taskemit.Backoff", "taskemit.RetryPolicy"],
        "settings": ["taskemit.Settings", "taskemit.load_settings"],
        "workers": ["taskemit.worker_settings", "taskemit.cron"],
        "monitor": ["taskemit.monitor.read_history", "taskemit.monitor.event_status", "taskemit.monitor.History"],
        "litestar": ["taskemit.litestar.TaskEmitPlugin", "taskemit.litestar.TaskEmitConfig"],
        "testing": ["taskemit.testing.run_until_finished", "taskemit.testing.InProcessWorker"],
        "errors": ["taskemit.errors.TaskEmitError", "taskemit.errors.RedisUnavailable"],
    }
    for page, names in reference.items():
        html = (site / "reference" / page / "index.html").read_text(encoding="utf-8")
        for name in names:
            assert f'id="{name}"' in html, f"{name} is not in the API reference page {page}"


_SETTINGS_ROW = re.compile(
    r"^\| `(?P<field>\w+)` \| (?P<type>[^|]+) \| `(?P<default>[^`]+)` \| `(?P<env>TASKEMIT_\w+)` \| (?P<desc>.+) \|$",
    re.M,
)


def test_settings_reference_lists_every_field_with_its_default() -> None:
    rows = {m["field"]: m for m in _SETTINGS_ROW.finditer((DOCS / "settings.md").read_text(encoding="utf-8"))}
    assert set(rows) == set(Settings.model_fields), "docs/settings.md must have one row per Settings field"
    for name, field in Settings.model_fields.items():
        row = rows[name]
        assert row["env"] == f"TASKEMIT_{name.upper()}"
        documented = tomllib.loads(f"value = {row['default']}")["value"]
        assert documented == field.get_default(call_default_factory=True), f"default of {name}"


# -- helpers for running the examples -----------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TASKEMIT_* from the caller's environment, and no settings.toml from the working directory."""
    for name in list(os.environ):
        if name.startswith("TASKEMIT_") and name not in ("TASKEMIT_TEST_REDIS_URL", PROTOCOL_ENV):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _no_drain(settings: Settings) -> Settings:
    return settings.model_copy(update={"drain_on_exit": False})


def _once(settings: Settings) -> Settings:
    """One attempt per job, so a failing listener's job finishes at once."""
    return settings.model_copy(update={"max_tries": 1})


def _arq_results(settings: Settings) -> Settings:
    """taskemit's worker writes arq's results too (``arq_results``), which the tests below read."""
    return settings.model_copy(update={"arq_results": True})


async def _job_result(redis: aioredis.Redis, settings: Settings, job_id: str) -> ArqResult:
    """The job's result as arq stores it (arq's own reader of it: tests/test_arq_format.py)."""
    data = await redis.get(settings.keys.result(job_id))
    assert data is not None, f"job {job_id} has no result"
    return decode_result(data, worker_settings([], settings=settings).job_deserializer)


async def _run_burst(listeners: list[Any], settings: Settings) -> None:
    """A stock arq worker in burst mode: run every queued job, then stop."""
    worker = create_worker(
        worker_settings(listeners, settings=settings), burst=True, handle_signals=False, poll_delay=0.02
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def _wait_finished(redis: aioredis.Redis, job_ids: list[str], timeout: float = 20.0) -> None:
    """Until arq has deleted the jobs' payloads: they succeeded or failed for good."""
    deadline = time.monotonic() + timeout
    while any([await redis.exists(f"arq:job:{job_id}") for job_id in job_ids]):
        assert time.monotonic() < deadline, "jobs did not finish"
        await asyncio.sleep(0.02)


def _child_env(settings: Settings, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    env.update(
        TASKEMIT_REDIS_URL=settings.redis_url,
        TASKEMIT_NAMESPACE=settings.namespace,
        PYTHONUNBUFFERED="1",
        **{f"TASKEMIT_{k.upper()}": v for k, v in more.items()},
    )
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _copy_quickstart(directory: Path) -> None:
    for name in ("quickstart.py", "quickstart_emit.py"):
        shutil.copy(EXAMPLES / name, directory / name)


QUICKSTART_MAILS = [
    "mail to ada@example.com: Welcome!",
    "mail to ada@example.com: Your account was created.",
    "mail to ada@example.com: Your password was changed.",
]


# -- index.md: the quickstart -------------------------------------------------------------


@needs_arq
async def test_quickstart_runs_on_the_stock_arq_worker_settings(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    point_env_at: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_env_at(taskemit_settings)  # before the import: WorkerSettings reads settings then
    quickstart_emit = examples("quickstart_emit")
    quickstart = examples("quickstart")

    await quickstart_emit.main()
    printed = capsys.readouterr().out
    assert re.search(
        r"stored event [0-9a-f-]{36}: \{'quickstart:send_account_email': '\{[\w-]+\}:[0-9a-f]{32}'\}", printed
    )
    assert "mail to" not in printed, "listeners must not run in the emitting process"

    worker = create_worker(quickstart.WorkerSettings, burst=True, handle_signals=False, poll_delay=0.02)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(QUICKSTART_MAILS)
    assert worker.jobs_complete == 3 and worker.jobs_failed == 0


def test_taskemit_worker_command_runs_the_quickstart(taskemit_settings: Settings, tmp_path: Path) -> None:
    _copy_quickstart(tmp_path)
    env = _child_env(taskemit_settings)
    emitted = _run([sys.executable, "quickstart_emit.py"], tmp_path, env)
    assert "stored event" in emitted.stdout
    worker = _run([sys.executable, "-m", "taskemit", "worker", "quickstart:WorkerSettings", "--burst"], tmp_path, env)
    assert sorted(worker.stdout.splitlines()) == sorted(QUICKSTART_MAILS), worker.stderr


@needs_arq
def test_arq_command_runs_the_quickstart(taskemit_settings: Settings, tmp_path: Path) -> None:
    _copy_quickstart(tmp_path)
    env = _child_env(taskemit_settings)
    _run([sys.executable, "quickstart_emit.py"], tmp_path, env)
    worker = _run([sys.executable, "-m", "arq", "quickstart.WorkerSettings", "--burst"], tmp_path, env)
    assert sorted(worker.stdout.splitlines()) == sorted(QUICKSTART_MAILS), worker.stderr


def test_taskemit_worker_from_settings_alone_with_a_pool(taskemit_settings: Settings, tmp_path: Path) -> None:
    _copy_quickstart(tmp_path)
    (tmp_path / "settings.toml").write_text('listeners = ["quickstart"]\n', encoding="utf-8")
    env = _child_env(taskemit_settings)
    _run([sys.executable, "quickstart_emit.py"], tmp_path, env)
    pool = _run([sys.executable, "-m", "taskemit", "worker", "--processes", "2", "--burst"], tmp_path, env)
    assert sorted(pool.stdout.splitlines()) == sorted(QUICKSTART_MAILS), pool.stderr
    assert "worker 0 started" in pool.stderr and "worker 1 started" in pool.stderr


def test_taskemit_worker_pool_restarts_a_crashed_child_and_forwards_sigterm(
    taskemit_settings: Settings, tmp_path: Path
) -> None:
    _copy_quickstart(tmp_path)
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "taskemit", "worker", "quickstart:WorkerSettings", "--processes", "2"],
        cwd=tmp_path,
        env=_child_env(taskemit_settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in supervisor.stderr or ()], daemon=True).start()
    children: dict[int, int] = {}  # slot -> pid of the child running in it now
    started = re.compile(r"worker (\d+) started \(pid (\d+)\)")

    def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {what}; supervisor log:\n" + "".join(log)
            try:
                line = lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            log.append(line)
            if match := started.search(line):
                children[int(match[1])] = int(match[2])

    try:
        wait_for(lambda: len(children) == 2, "two workers to start")
        victim = children[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: children[0] != victim, "the crashed worker to be restarted")
        assert any(f"(pid {victim}) exited" in line and "restarting" in line for line in log)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=45) == 0
        for pid in children.values():
            deadline = time.monotonic() + 10
            while _alive(pid):
                assert time.monotonic() < deadline, f"worker pid {pid} outlived its supervisor"
                time.sleep(0.05)
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(timeout=45)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
        for pid in children.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_emit_waits_for_redis_to_come_back() -> None:
    with RedisServer() as server:
        server.stop()  # Redis is down when the emitter starts and when it emits
        settings = load_settings(redis_url=server.url, namespace="outage", shutdown_timeout=30)

        @listener("user_created")
        async def on_created(email: str) -> None: ...

        async with Emitter([on_created], settings) as emitter:
            emitter.emit("user_created", email="ada@example.com")
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)
        async with aioredis.Redis.from_url(server.url) as redis:
            assert await redis.zcard(settings.queue_key) == 1


def test_emit_outside_the_context_manager_is_an_error() -> None:
    @listener("user_created")
    async def on_created(email: str) -> None: ...

    with pytest.raises(RuntimeError, match="not initialized"):
        Emitter([on_created], load_settings()).emit("user_created", email="ada@example.com")


# -- workers.md ---------------------------------------------------------------------------


@needs_arq
async def test_deploy_skew_leaves_the_job_for_a_worker_that_has_it(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quickstart = examples("quickstart")
    sent: list[str] = []
    monkeypatch.setattr(quickstart, "send_mail", lambda to, text: sent.append(text))
    settings = _arq_results(_once(_no_drain(taskemit_settings)))
    async with Emitter(quickstart.LISTENERS, settings) as emitter:  # the new code: two listeners
        receipts = [await emitter.publish("user_created", email=f"{n}@example.com") for n in range(3)]

    # an old worker that only knows send_welcome_email
    await _run_burst([quickstart.send_welcome_email], settings)

    assert sent == ["Welcome!"] * 3
    for receipt in receipts:
        missing = await _job_result(redis, settings, receipt.jobs["quickstart:send_account_email"])
        assert missing.success is False
        assert isinstance(missing.result, ListenerError)
        assert "function 'quickstart:send_account_email' not found" in str(missing.result)
        found = await _job_result(redis, settings, receipt.jobs["quickstart:send_welcome_email"])
        assert found.success is True
        assert not await redis.exists(taskemit_settings.keys.dead(receipt.jobs["quickstart:send_account_email"]))

    # taskemit's own worker (`taskemit worker`, InProcessWorker) leaves the job queued for a
    # worker that has its listener: nothing fails, nothing is dead-lettered
    async with Emitter(quickstart.LISTENERS, settings) as emitter:
        receipt = await emitter.publish("user_created", email="late@example.com")
    late = receipt.jobs["quickstart:send_account_email"]
    async with InProcessWorker([quickstart.send_welcome_email], settings):
        await _wait_finished(redis, [receipt.jobs["quickstart:send_welcome_email"]])
        await asyncio.sleep(0.2)
        assert await redis.exists(f"arq:job:{late}")
    assert not await redis.exists(taskemit_settings.keys.dead(late))
    assert sent == ["Welcome!"] * 4
    # the new deployment's worker runs it
    async with InProcessWorker(quickstart.LISTENERS, settings):
        await _wait_finished(redis, [late])
    assert (await _job_result(redis, settings, late)).success is True


async def test_listener_timeout_fails_the_attempt(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    @listener("slow", timeout=0.2, name="docs.slow")
    async def slow() -> None:
        await asyncio.sleep(30)

    settings = _arq_results(_once(taskemit_settings))
    started = time.monotonic()
    async with Emitter([slow], settings) as emitter:
        receipt = await emitter.publish("slow")
    assert time.monotonic() - started < 10
    result = await _job_result(redis, settings, receipt.jobs["docs.slow"])
    assert result.success is False
    assert isinstance(result.result, ListenerError) and result.result.type_name.endswith("ListenerTimeout")


def test_two_listeners_with_one_name_are_rejected() -> None:
    @listener("a", name="docs.same")
    async def first() -> None: ...

    @listener("b", name="docs.same")
    async def second() -> None: ...

    with pytest.raises(ListenerConfigError, match=r"docs\.same"):
        worker_settings([first, second], settings=load_settings())


async def test_worker_settings_options(taskemit_settings: Settings) -> None:
    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["started"] = True

    @listener("a", name="docs.a")
    async def handler() -> None: ...

    cls = worker_settings([handler], settings=taskemit_settings, on_startup=on_startup, max_jobs=3)
    assert [item.name for item in cls.taskemit_listeners] == ["docs.a"]
    assert cls.queue_name == taskemit_settings.queue_key
    assert cls.health_check_key == f"{taskemit_settings.queue_key}:health-check"
    assert cls.keep_result == taskemit_settings.result_retention
    assert cls.job_timeout == taskemit_settings.job_timeout + 5
    assert cls.max_jobs == 3
    ctx: dict[str, Any] = {}
    await cls.on_startup(ctx)  # the given hook, inside the history's (which a stock arq worker runs)
    assert ctx == {"started": True}


async def test_payloads_arrive_as_documented(
    taskemit_settings: Settings, examples: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    payloads = examples("payloads")
    await payloads.main(taskemit_settings)  # drain_on_exit: the listener has run when main returns
    assert capsys.readouterr().out == documented_output("payloads.py")


async def test_payloads_stored_job_format(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    @listener("user_created", name="docs.welcome")
    async def welcome(email: str) -> None: ...

    async with Emitter([welcome], _no_drain(taskemit_settings)) as emitter:
        receipt = await emitter.publish("user_created", email="ada@example.com")
        with pytest.raises(ListenerConfigError):
            emitter.emit("user_created", email="ada@example.com", __taskemit__={})
        with pytest.raises(PayloadEncodeError) as raised:
            emitter.emit("user_created", email=object())
        assert isinstance(raised.value, TypeError)
    job_id = receipt.jobs["docs.welcome"]
    assert await redis.zscore(taskemit_settings.queue_key, job_id) is not None
    payload = json.loads(await redis.get(f"arq:job:{job_id}"))
    assert set(payload) == {"t", "f", "a", "k", "et"}
    assert payload["f"] == "docs.welcome" and payload["a"] == []
    assert payload["k"] == {
        "email": "ada@example.com",
        "__taskemit__": {"event": receipt.event_uuid, "event_id": "user_created"},
    }
    assert await redis.zcard(taskemit_settings.queue_key) == 1  # the refused emits stored nothing


async def test_payloads_pickle_keeps_types(taskemit_settings: Settings) -> None:
    received: list[Any] = []

    @listener("e", name="docs.pickled")
    async def keep(value: Any) -> None:
        received.append(value)

    settings = taskemit_settings.model_copy(update={"serializer": "pickle"})
    async with Emitter([keep], settings) as emitter:
        emitter.emit("e", value=("a", frozenset({1})))
    assert received == [("a", frozenset({1}))]


# -- retries.md ---------------------------------------------------------------------------


async def test_retries_until_an_attempt_succeeds(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retries = examples("retries")
    keys_seen: list[str] = []

    def send_sms(phone: str, text: str, idempotency_key: str) -> None:
        keys_seen.append(idempotency_key)
        if len(keys_seen) < 3:
            raise retries.GatewayBusy("try later")

    monkeypatch.setattr(retries, "send_sms", send_sms)
    taskemit_settings = _arq_results(taskemit_settings)
    started = time.monotonic()
    async with Emitter([retries.send_confirmation_sms], taskemit_settings) as emitter:
        receipt = await emitter.publish("phone_verified", phone="+15550100")  # no `attempt`: the worker adds it
    assert time.monotonic() - started >= 1.4, "two retries wait 0.5 s and 1 s"
    assert len(keys_seen) == 3 and len(set(keys_seen)) == 1, "one idempotency key for every attempt"
    assert keys_seen[0] == f"{receipt.event_uuid}:retries:send_confirmation_sms"
    job_id = receipt.jobs["retries:send_confirmation_sms"]
    result = await _job_result(redis, taskemit_settings, job_id)
    assert result.success is True and result.job_try == 3
    assert not await redis.exists(taskemit_settings.keys.dead(job_id))


@pytest.mark.parametrize(("error", "reason"), [("InvalidNumber", "give_up_on"), ("ValueError", "not in retry_on")])
async def test_retries_give_up_at_once(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    error: str,
    reason: str,
) -> None:
    retries = examples("retries")
    exception = getattr(retries, error, None) or ValueError
    calls: list[str] = []

    def send_sms(phone: str, text: str, idempotency_key: str) -> None:
        calls.append(phone)
        raise exception(f"bad number {phone}")

    monkeypatch.setattr(retries, "send_sms", send_sms)
    taskemit_settings = _arq_results(taskemit_settings)
    async with Emitter([retries.send_confirmation_sms], taskemit_settings) as emitter:
        receipt = await emitter.publish("phone_verified", phone="+1")
    assert calls == ["+1"], f"an exception that is {reason} is not retried"
    job_id = receipt.jobs["retries:send_confirmation_sms"]
    result = await _job_result(redis, taskemit_settings, job_id)
    assert result.success is False and isinstance(result.result, ListenerError)
    assert result.result.type_name.endswith(error) and result.result.message == "bad number +1"
    assert await redis.exists(taskemit_settings.keys.dead(job_id)), "a job that failed for good is a dead letter"


async def test_retries_requested_by_the_listener(taskemit_settings: Settings, redis: aioredis.Redis) -> None:
    attempts: list[int] = []

    @listener("e", name="docs.asks_for_retry", max_tries=3)
    async def flaky(attempt: Attempt) -> None:
        attempts.append(attempt.number)
        if not attempt.is_last:
            raise Retry(after=0.1, reason="not yet")

    taskemit_settings = _arq_results(taskemit_settings)
    async with Emitter([flaky], taskemit_settings) as emitter:
        receipt = await emitter.publish("e")
    assert attempts == [1, 2, 3]
    assert (await _job_result(redis, taskemit_settings, receipt.jobs["docs.asks_for_retry"])).success is True


def test_retries_default_policy_is_the_documented_one() -> None:
    policy = load_settings().default_policy
    assert policy.max_tries == 5 and policy.timeout == 300.0
    assert policy.backoff == Backoff.exponential(first=1.0, factor=2.0, cap=300.0, jitter="full")
    assert policy.retry_on == (Exception,) and policy.give_up_on == ()
    assert dataclasses.replace(policy.backoff, jitter="none").delay_for(10) == 300.0


def test_backoff_chart_prints_the_documented_chart(
    examples: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    examples("backoff_chart").main()
    assert capsys.readouterr().out == documented_output("backoff_chart.py")


async def test_rate_limited_waits_as_long_as_the_api_asks(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = examples("rate_limited")
    keys_seen: list[str] = []

    def push_invoice(invoice_id: str, idempotency_key: str) -> None:
        keys_seen.append(idempotency_key)
        if len(keys_seen) < 3:
            raise module.RateLimited(retry_after=0.25)

    monkeypatch.setattr(module, "push_invoice", push_invoice)
    async with Emitter([module.sync_invoice], taskemit_settings) as emitter:
        receipt = await emitter.publish("invoice_issued", invoice_id="inv-1")
    assert receipt is not None
    assert keys_seen == [f"{receipt.event_uuid}:rate_limited:sync_invoice"] * 3
    job_id = receipt.jobs["rate_limited:sync_invoice"]
    attempts = [json.loads(a) for a in await redis.lrange(taskemit_settings.keys.attempts(job_id), 0, -1)]
    assert [a["status"] for a in attempts] == ["failed", "failed", "complete"]
    for failed in attempts[:2]:
        # the wait is the API's 0.25 s, not the policy's (random, up to 5 s)
        assert failed["next_attempt_at"] - failed["finished"] == pytest.approx(0.25, abs=0.05)
        assert failed["error"]["type"] == "taskemit.attempt.Retry"
        assert failed["error"]["message"] == "rate limited, retry after 0.25 s"


async def test_rate_limited_last_attempt_keeps_the_api_error(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = examples("rate_limited")
    calls: list[str] = []

    def push_invoice(invoice_id: str, idempotency_key: str) -> None:
        calls.append(invoice_id)
        raise module.RateLimited(retry_after=0.01)

    monkeypatch.setattr(module, "push_invoice", push_invoice)
    async with Emitter([module.sync_invoice], taskemit_settings) as emitter:
        receipt = await emitter.publish("invoice_issued", invoice_id="inv-2")
    assert receipt is not None
    assert len(calls) == 6, "max_tries=6"
    letter = await get_dead_letter(redis, receipt.jobs["rate_limited:sync_invoice"], space=taskemit_settings.keys)
    assert letter is not None and letter.reason == "attempts exhausted"
    assert letter.error["type"] == "rate_limited.RateLimited"
    assert [a["error"]["type"].rsplit(".", 1)[-1] for a in letter.attempts] == ["Retry"] * 5 + ["RateLimited"]


async def test_dead_letters_replays_only_the_chosen_error(
    taskemit_settings: Settings, examples: Callable[[str], ModuleType], redis: aioredis.Redis
) -> None:
    module = examples("dead_letters")
    outage = True
    refunded: list[int] = []

    @listener("refund_requested", name="docs.refund", max_tries=1)
    async def refund(order_id: int) -> None:
        if order_id % 2:
            raise ValueError(f"order {order_id} was never paid")
        if outage:
            raise ConnectionError("payments API unreachable")
        refunded.append(order_id)

    @listener("refund_requested", name="docs.other", max_tries=1)
    async def other(order_id: int) -> None:
        raise ConnectionError("another listener's outage")

    async with Emitter([refund, other], taskemit_settings) as emitter:
        receipts = [await emitter.publish("refund_requested", order_id=n) for n in range(6)]
    assert all(receipts)
    assert len([letter async for letter in iter_dead_letters(redis, space=taskemit_settings.keys)]) == 12

    new_job_ids = await module.replay_failed_with("builtins.ConnectionError", "docs.refund", taskemit_settings)
    assert len(new_job_ids) == 3, "orders 0, 2 and 4 died of the outage"
    left = [letter async for letter in iter_dead_letters(redis, space=taskemit_settings.keys)]
    assert sorted((letter.listener, letter.error["type"]) for letter in left) == sorted(
        [("docs.refund", "builtins.ValueError")] * 3 + [("docs.other", "builtins.ConnectionError")] * 6
    )
    outage = False
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    async with InProcessWorker([refund, other], settings):
        events = [await receipt.wait(timeout=10) for receipt in receipts[0::2] if receipt is not None]
    assert sorted(refunded) == [0, 2, 4]
    replayed = [job for event in events for job in event.jobs if job.listener == "docs.refund"]
    assert {job.job_id for job in replayed} == set(new_job_ids), "the events now point at the new jobs"
    assert {job.status for job in replayed} == {"complete"}


# -- litestar.md --------------------------------------------------------------------------


async def test_litestar_app_runs_every_listener(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    point_env_at: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from litestar.testing import AsyncTestClient

    from taskemit.litestar import ArqEventEmitter

    point_env_at(taskemit_settings, drain_on_exit="1")
    litestar_app = examples("litestar_app")
    effects: list[tuple[str, ...]] = []
    monkeypatch.setattr(litestar_app, "send_mail", lambda to, text: effects.append(("mail", to, text)))
    monkeypatch.setattr(litestar_app, "open_ticket", lambda text: effects.append(("ticket", text)))
    app = litestar_app.create_app()
    assert isinstance(app.event_emitter, ArqEventEmitter)

    async with AsyncTestClient(app=app) as client:
        created = await client.post("/users", json={"first_name": "Ada", "last_name": "L", "email": "ada@example.com"})
        changed = await client.post("/users/password", json={"email": "ada@example.com"})
        deleted = await client.request("DELETE", "/users", json={"email": "ada@example.com", "reason": "moved"})
        assert (created.status_code, changed.status_code, deleted.status_code) == (201, 201, 204)
        receipt = await app.event_emitter.publish("password_changed", email="bob@example.com")
        assert receipt is not None and set(receipt.jobs) == {"litestar_app:send_email_handler"}
        with pytest.raises(UnknownEventError) as raised:
            app.emit("user_renamed", email="ada@example.com")
        from litestar.exceptions import ImproperlyConfiguredException

        assert isinstance(raised.value, ImproperlyConfiguredException)
        assert effects == [], "listeners run in the worker, not in the request"

    assert sorted(effects) == sorted(
        [
            ("mail", "ada@example.com", "Welcome!"),
            ("mail", "ada@example.com", "Your account was created."),
            ("mail", "ada@example.com", "Your password was changed."),
            ("mail", "ada@example.com", "Goodbye!"),
            ("ticket", "user deleted: moved"),
            ("mail", "bob@example.com", "Your account was created."),
        ]
    )
    assert {item.name for item in litestar_app.WorkerSettings.taskemit_listeners} == {
        f"litestar_app:{name}"
        for name in (
            "send_welcome_email_handler",
            "send_email_handler",
            "send_farewell_email_handler",
            "notify_customer_support",
        )
    }


async def test_litestar_app_unknown_events_can_be_ignored(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    point_env_at: Callable[..., None],
    redis: aioredis.Redis,
) -> None:
    from litestar.testing import AsyncTestClient

    point_env_at(taskemit_settings, on_unknown_event="ignore")
    app = examples("litestar_app").create_app()
    async with AsyncTestClient(app=app):
        assert app.emit("user_renamed", email="ada@example.com") is None
        assert await app.event_emitter.publish("user_renamed", email="ada@example.com") is None
    assert await redis.zcard(taskemit_settings.queue_key) == 0


async def test_mismatched_arguments_are_refused_at_emit(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mismatched = examples("mismatched_arguments")
    await mismatched.main(taskemit_settings)
    assert capsys.readouterr().out == documented_output("mismatched_arguments.py")
    assert await redis.zcard(taskemit_settings.queue_key) == 0
    assert await redis.keys("arq:job:*") == []
    listeners = [mismatched.send_farewell_email_handler, mismatched.notify_customer_support]
    async with Emitter(listeners, taskemit_settings) as emitter:
        with pytest.raises(ListenerArgumentError, match="missing a required argument: 'email'"):
            emitter.emit("user_deleted", reason="deleted")


async def test_mismatched_arguments_a_required_parameter_needs_every_event_to_pass_it(
    taskemit_settings: Settings, redis: aioredis.Redis
) -> None:
    @listener("user_created", "password_changed", name="docs.send_email")
    async def send_email_handler(email: str, message: str) -> None: ...

    async with Emitter([send_email_handler], taskemit_settings) as emitter:
        emitter.emit("password_changed", email="ada@example.com", message="changed")
        with pytest.raises(ListenerArgumentError, match="missing a required argument: 'message'"):
            emitter.emit("user_created", email="ada@example.com")
        await emitter.drain()
    assert await redis.zcard(taskemit_settings.queue_key) == 0


async def test_mismatched_arguments_in_a_litestar_handler_fail_the_request(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    point_env_at: Callable[..., None],
    redis: aioredis.Redis,
) -> None:
    from litestar import Litestar, Request, post
    from litestar.testing import AsyncTestClient

    from taskemit.litestar import ArqEventEmitter

    mismatched = examples("mismatched_arguments")
    point_env_at(taskemit_settings)

    @post("/users/delete")
    async def delete_user_handler(request: Request) -> None:
        request.app.emit("user_deleted", email="ada@example.com", reason="deleted")

    app = Litestar(
        route_handlers=[delete_user_handler],
        listeners=[mismatched.send_farewell_email_handler, mismatched.notify_customer_support],
        event_emitter_backend=ArqEventEmitter,
    )
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/users/delete")
    assert response.status_code == 500
    assert await redis.zcard(taskemit_settings.queue_key) == 0


async def test_litestar_listener_exceptions_fail_the_job(
    taskemit_settings: Settings,
    examples: Callable[[str], ModuleType],
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from litestar.events import EventListener

    module = examples("litestar_listener")
    assert isinstance(module.charge_card, EventListener), "the example must use Litestar's own decorator"
    assert [item.name for item in module.WorkerSettings.taskemit_listeners] == ["litestar_listener:charge_card"]
    by_module = worker_settings(settings=load_settings(listeners=["litestar_listener"]))
    assert by_module.taskemit_listeners == (), "the listeners setting collects taskemit listeners only"
    charged: list[int] = []

    def charge(order_id: int, amount: str) -> None:
        if order_id == 2:
            raise module.PaymentDeclined(f"card declined for order {order_id}")
        charged.append(order_id)

    monkeypatch.setattr(module, "charge", charge)
    settings = _arq_results(_once(taskemit_settings))
    async with Emitter(module.LISTENERS, settings) as emitter:
        paid = await emitter.publish("order_placed", order_id=1, amount="9.90")
        declined = await emitter.publish("order_placed", order_id=2, amount="5.00")
    # drained without raising; the failure is in the job, not swallowed
    assert charged == [1]
    assert (await _job_result(redis, settings, paid.jobs["litestar_listener:charge_card"])).success is True
    failed = await _job_result(redis, settings, declined.jobs["litestar_listener:charge_card"])
    assert failed.success is False
    assert isinstance(failed.result, ListenerError)
    assert failed.result.type_name.endswith("PaymentDeclined")
    assert failed.result.message == "card declined for order 2"


# -- monitoring.md ------------------------------------------------------------------------


_METRIC_ROW = re.compile(r"^\| `(?P<name>taskemit_\w+)` \| (?P<type>\w+) \| (?P<labels>[^|]*) \|", re.M)


async def test_monitoring_captures_script_writes_every_view(
    examples: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    out = tmp_path / "captures"
    captures = await examples("monitoring_captures").main(out)
    assert set(captures) == set(CAPTURE_VIEWS) == {p.stem for p in out.glob("*.txt")}
    for name, text in captures.items():
        assert (out / f"{name}.txt").read_text(encoding="utf-8") == text
        check_capture(name, text)

    # the page's table of metrics: every metric served, with its type and labels, and no other
    served: dict[str, tuple[str, set[str]]] = {}
    for line in captures["metrics"].splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            served[name] = (kind, set())
        elif not line.startswith("#"):
            sample = re.match(r"(\w+?)(?:_count|_sum)?(?:\{(.*)\})? ", line)
            assert sample is not None, line
            family = sample[1] if sample[1] in served else re.sub(r"_(count|sum)$", "", sample[1])
            served[family][1].update(re.findall(r'(\w+)="', sample[2] or ""))
    documented = {
        m["name"]: (m["type"], set(re.findall(r"`(\w+)`", m["labels"])))
        for m in _METRIC_ROW.finditer((DOCS / "monitoring.md").read_text(encoding="utf-8"))
    }
    # a family without samples in this run (the outbox relays': no relay runs here) shows no labels
    unlabelled = {name for name, (_, labels) in served.items() if not labels and documented.get(name, ("", ()))[1]}
    assert {name for name in unlabelled if not name.startswith("taskemit_outbox_")} == set()
    assert {k: (v[0] if k in unlabelled else v) for k, v in documented.items()} == {
        k: (v[0] if k in unlabelled else v) for k, v in served.items()
    }


# -- settings.md --------------------------------------------------------------------------


def test_settings_example_file_loads() -> None:
    path = EXAMPLES / "settings.toml"
    settings = load_settings(path)
    for key, value in tomllib.loads(path.read_text(encoding="utf-8")).items():
        assert getattr(settings, key) == value


def test_settings_example_lookup_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().queue_name == "default"  # no settings.toml here: the defaults
    (tmp_path / "settings.toml").write_text('queue_name = "from-file"\nmax_jobs = 7\n', encoding="utf-8")
    assert load_settings().queue_name == "from-file"
    monkeypatch.setenv("TASKEMIT_QUEUE_NAME", "from-env")
    monkeypatch.setenv("TASKEMIT_LISTENERS", "app.listeners,app.billing.listeners")
    monkeypatch.setenv("TASKEMIT_DRAIN_ON_EXIT", "1")
    monkeypatch.setenv("TASKEMIT_BACKOFF", '{"kind": "fixed", "seconds": 5}')
    settings = load_settings()
    assert (settings.queue_name, settings.max_jobs, settings.drain_on_exit) == ("from-env", 7, True)
    assert settings.listeners == ["app.listeners", "app.billing.listeners"]
    assert settings.backoff["kind"] == "fixed"
    assert load_settings(queue_name="from-code").queue_name == "from-code"

    other = tmp_path / "other.toml"
    other.write_text("max_jobs = 3\n", encoding="utf-8")
    monkeypatch.setenv("TASKEMIT_SETTINGS", str(other))
    assert load_settings().max_jobs == 3
    monkeypatch.setenv("TASKEMIT_SETTINGS", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError, match=r"missing\.toml"):
        load_settings()


def test_settings_example_errors_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKEMIT_MAX_JOBS", "0")
    with pytest.raises(ValidationError) as raised:
        load_settings()
    assert "max_jobs\n  Input should be greater than 0" in str(raised.value)
    monkeypatch.delenv("TASKEMIT_MAX_JOBS")

    (tmp_path / "settings.toml").write_text('queu_name = "typo"\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="queu_name"):
        load_settings()

    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "taskemit", "worker", "--burst"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Error: invalid taskemit settings:" in result.stderr and "queu_name" in result.stderr


# -- testing.md ---------------------------------------------------------------------------


async def test_testing_drain_inside_the_block(taskemit_settings: Settings) -> None:
    ran: list[str] = []

    @listener("e", name="docs.drained")
    async def record(value: str) -> None:
        ran.append(value)

    async with Emitter([record], taskemit_settings) as emitter:
        await emitter.publish("e", value="first")
        await emitter.drain(timeout=20)
        assert ran == ["first"]
        await emitter.publish("e", value="second")
    assert ran == ["first", "second"]


def test_testing_example_passes(taskemit_redis_url: str) -> None:
    example = EXAMPLES / "testing_example.py"
    expected = len(re.findall(r"^async def test_|^def test_", example.read_text(encoding="utf-8"), re.M))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKEMIT_") or k == PROTOCOL_ENV}
    env["TASKEMIT_TEST_REDIS_URL"] = taskemit_redis_url
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(example), "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout, result.stdout
