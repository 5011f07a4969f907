"""A throwaway PostgreSQL cluster on a free port, for the outbox tests and benchmarks.

Debian's ``postgresql`` package (binaries under ``/usr/lib/postgresql/*/bin``, else
``pg_config --bindir``, else PATH). ``initdb`` refuses to run as root, so as root the cluster
belongs to the ``postgres`` user (``nobody`` where there is none) and its directory is handed
to that user. ``PostgresUnavailable`` says why a cluster cannot be had (tests skip with it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from taskemit.store.redis_server import free_port

__all__ = ("PostgresCluster", "PostgresUnavailable", "find_bindir")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the cluster did not start."""


def find_bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl`` (the newest Debian version first)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and (Path(bindir) / "initdb").exists():
            return Path(bindir)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")


class PostgresCluster:
    """``with PostgresCluster() as pg: pg.url("asyncpg")``: a private cluster, deleted on exit."""

    def __init__(self, options: Sequence[str] = ("-c", "fsync=off", "-c", "full_page_writes=off")) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        self.options = list(options)
        self._dir = Path(tempfile.mkdtemp(prefix="taskemit-pg-"))
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                self._user = pwd.getpwnam("nobody")
            os.chown(self._dir, self._user.pw_uid, self._user.pw_gid)
        self.data = self._dir / "data"
        self.log = self._dir / "server.log"
        self._started = False

    def url(self, driver: str = "asyncpg", database: str = "postgres") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, timeout: float = 60) -> None:
        user = self._user

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        env = {**os.environ, "LC_ALL": "C", "HOME": str(self._dir)}
        done = subprocess.run(
            list(command), capture_output=True, text=True, preexec_fn=demote, env=env, timeout=timeout, cwd=self._dir
        )
        if done.returncode != 0:
            raise PostgresUnavailable(f"{Path(command[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> PostgresCluster:
        initdb, pg_ctl = str(self.bindir / "initdb"), str(self.bindir / "pg_ctl")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = " ".join(
            ["-p", str(self.port), "-k", str(self._dir), "-c", "listen_addresses=127.0.0.1", *self.options]
        )
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                time.sleep(0.5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
