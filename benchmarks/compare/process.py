"""Worker processes: each command in a process group of its own, killed as a group.

Every group started is remembered until stopped, so ``stop_all()`` (called on exit, error
or Ctrl-C) leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

_live: set[WorkerGroup] = set()
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


class WorkerGroup:
    """The worker processes of one system for one run."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.commands = commands
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.log = log
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> WorkerGroup:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        _live.add(self)
        with self.log.open("ab") as out:
            for command in self.commands:
                out.write(f"$ {' '.join(command)}\n".encode())
                out.flush()
                self.processes.append(
                    subprocess.Popen(
                        command,
                        cwd=self.cwd,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        return self

    def check_alive(self) -> None:
        """Raise if a worker process exited (its log says why)."""
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with code {process.returncode}; see {self.log}")

    def cpu_seconds(self) -> float:
        """CPU time of every worker process, its threads and its children so far.

        Linux: the scheduler's nanosecond run time of each thread (/proc/PID/task/TID/schedstat),
        as clock-tick user+system times (10 ms steps) cannot resolve an idle worker's few
        milliseconds a second; elsewhere psutil's user+system times.
        """
        total = 0.0
        for proc in self._every_process():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += _cpu_seconds(proc)
        return total

    def _every_process(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for process in self.processes:
            try:
                root = psutil.Process(process.pid)
                found += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return found

    def pause(self) -> None:
        """SIGSTOP every worker process and its children (``resume`` lets them all go at once)."""
        for proc in self._every_process():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self._every_process():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)

    def settled(self, window: float = 0.5, busy: float = 0.15) -> bool:
        """True once the processes together used under ``busy`` of a core over ``window`` seconds:
        every one of them has finished starting (imports) and waits for work."""
        before = self.cpu_seconds()
        time.sleep(window)
        return (self.cpu_seconds() - before) / window < busy

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in self.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, sig)
            deadline = time.monotonic() + STOP_GRACE
            while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
                time.sleep(0.02)
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # children the leader left behind
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _live.discard(self)

    def __enter__(self) -> WorkerGroup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _cpu_seconds(proc: psutil.Process) -> float:
    tasks = Path(f"/proc/{proc.pid}/task")
    if tasks.is_dir():
        nanoseconds = 0
        for task in tasks.iterdir():
            try:
                nanoseconds += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return nanoseconds / 1e9
    times = proc.cpu_times()
    return float(times.user + times.system)


def stop_all() -> None:
    for group in list(_live):
        group.stop()
