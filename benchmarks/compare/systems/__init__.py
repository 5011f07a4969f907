"""The systems compared, by name, in the order they run within a round."""

from __future__ import annotations

from benchmarks.compare.systems.base import System

NAMES = ("taskemit", "arq", "saq", "streaq", "taskiq")


def create(name: str) -> System:
    """The adapter of ``name`` (imports that system's package only now)."""
    if name == "taskemit":
        from benchmarks.compare.systems.taskemit import TaskEmit

        return TaskEmit()
    if name == "arq":
        from benchmarks.compare.systems.arq import Arq

        return Arq()
    if name == "saq":
        from benchmarks.compare.systems.saq import Saq

        return Saq()
    if name == "streaq":
        from benchmarks.compare.systems.streaq import Streaq

        return Streaq()
    if name == "taskiq":
        from benchmarks.compare.systems.taskiq import Taskiq

        return Taskiq()
    raise ValueError(f"unknown system {name!r}; known: {', '.join(NAMES)}")


def select(spec: str | None) -> list[str]:
    """Names picked by ``--systems``: each entry matches itself and its variants ."""
    if not spec:
        return list(NAMES)
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [w for w in wanted if not any(n == w or n.startswith(w + "-") for n in NAMES)]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    return [n for n in NAMES if any(n == w or n.startswith(w + "-") for w in wanted)]
