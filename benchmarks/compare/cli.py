"""The ``compare`` command: scenarios one after the other, systems round-robin within each."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from redis import asyncio as aioredis
from rich.console import Console

from benchmarks.compare import report, scenarios, systems
from benchmarks.compare.machine import machine_info, newest_redis_server
from benchmarks.compare.process import stop_all
from benchmarks.compare.scenarios.common import Context
from benchmarks.compare.systems.base import ROOT, System

RESULTS = ROOT / "benchmarks" / "results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer rounds and jobs (under 3 minutes)")
    parser.add_argument("--json", type=Path, default=RESULTS / "compare.json", help="where to write the figures")
    parser.add_argument("--chart", type=Path, help="also draw a PNG bar chart here")
    parser.add_argument("--only", help=f"scenarios, comma-separated: {','.join(scenarios.NAMES)}")
    parser.add_argument("--systems", help=f"systems, comma-separated: {','.join(systems.NAMES)}")


def _redis_server() -> Any:
    from taskemit.store.redis_server import RedisServer

    return RedisServer(binary=newest_redis_server())


def run_timeout(quick: bool) -> float:
    """Hard limit of one system's run of one scenario (the scenarios' own limits come first)."""
    return 150.0 if quick else 420.0


async def run_one(ctx: Context, scenario: ModuleType, system: System | str) -> dict[str, Any]:
    await ctx.reset()
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(scenario.run(ctx, system), run_timeout(ctx.quick))
        result["ok"] = True
    except Exception as exc:  # a system that fails shows "failed"; the run goes on
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        stop_all()
    result["wall_s"] = time.perf_counter() - started
    return result


async def compare(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    names = systems.select(args.systems)
    chosen = {name: systems.create(name) for name in names}
    broken: dict[str, str] = {}
    for name, system in chosen.items():
        try:
            await asyncio.to_thread(system.prepare)
        except Exception as exc:
            broken[name] = f"setup failed: {type(exc).__name__}: {exc}"
            console.print(f"[red]{name}: {broken[name]}[/red]")
    server = _redis_server()
    results: dict[str, Any] = {
        "machine": machine_info(server.binary),
        "config": {"quick": args.quick, "systems": names, "scenarios": scenarios.select(args.only)},
        "systems": {n: {"settings": s.settings, "versions": s.versions()} for n, s in chosen.items()},
        "scenarios": {},
    }
    logs = args.json.parent / "logs"
    server.start()
    redis = aioredis.Redis.from_url(server.url)
    try:
        ctx = Context(url=server.url, redis=redis, quick=args.quick, logs=logs)
        for scenario_name in results["config"]["scenarios"]:
            scenario = scenarios.load(scenario_name)
            members = [n for n in names if scenario.SYSTEMS is None or n in scenario.SYSTEMS]
            variants = getattr(scenario, "VARIANTS", None)  # a scenario of its own variants (web)
            if variants is not None:
                members = list(variants) if members else []
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in members}
            rounds = scenario.rounds(args.quick)
            for round_number in range(rounds):
                # a scenario of variants runs them in the reverse order every other round (A B, B A,
                # A B...): a machine that speeds up or slows down over a run favours neither
                order = members[::-1] if variants is not None and round_number % 2 else members
                for name in order:
                    if variants is None and name in broken:
                        runs[name].append({"ok": False, "error": broken[name]})
                        continue
                    ctx.run_id = f"{scenario_name}-r{round_number}"
                    console.print(f"[dim]{scenario_name} round {round_number + 1}/{rounds}: {name}...[/dim]", end=" ")
                    result = await run_one(ctx, scenario, name if variants is not None else chosen[name])
                    runs[name].append(result)
                    shown = f"{result['value']:,.2f}" if result["ok"] else f"[red]{result['error'][:120]}[/red]"
                    console.print(f"[dim]{shown} ({result['wall_s']:.1f} s)[/dim]")
            summary = {n: report.summarize(r) for n, r in runs.items()}
            if variants is not None:  # each round ran the variants back to back: compare them pair by pair
                report.add_paired_ratios(summary, runs)
            results["scenarios"][scenario_name] = {
                "title": scenario.TITLE,
                "unit": scenario.UNIT,
                "higher_is_better": scenario.HIGHER_IS_BETTER,
                "summary": summary,
                "runs": runs,
            }
            report.print_table(console, scenario, summary)
            console.print()
    finally:
        stop_all()
        await redis.aclose()
        server.__exit__(None, None, None)  # stops it and removes its directory
    return results


def run(args: argparse.Namespace) -> int:
    console = Console() if sys.stdout.isatty() else Console(width=160)
    started = time.perf_counter()
    try:
        results = asyncio.run(compare(args, console))
    finally:
        stop_all()
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    report.write_json(args.json, results)
    console.print(f"figures: {args.json}")
    if args.chart:
        report.write_chart(args.chart, results)
        console.print(f"chart: {args.chart}")
    console.print(f"wall time: {results['wall_seconds']:.1f} s")
    return 0
