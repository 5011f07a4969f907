"""One module per scenario: NAME, TITLE, UNIT, HIGHER_IS_BETTER, SYSTEMS, rounds(quick), run(ctx, system).

A scenario with VARIANTS (web) runs those instead of systems: run(ctx, variant_name).
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("drain", "latency", "idle_cpu", "scaling", "emit", "scale", "web", "durability", "faults")


def load(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"benchmarks.compare.scenarios.{name}")


def select(spec: str | None) -> list[str]:
    if not spec:
        return list(NAMES)
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    for name in wanted:
        load(name)
    return [n for n in NAMES if n in wanted]
