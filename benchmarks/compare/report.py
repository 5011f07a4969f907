"""Results: one rich table per scenario, the JSON file, the matplotlib chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

REFERENCES = ("taskemit",)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the rounds that succeeded; failed when none did."""
    good = [run for run in runs if run.get("ok")]
    if not good:
        errors = sorted({run.get("error", "?") for run in runs})
        return {"value": None, "failed": "; ".join(errors)[:300], "rounds": len(runs)}
    return {
        "value": statistics.median(run["value"] for run in good),
        "rounds": len(runs),
        "ok_rounds": len(good),
        "partial": any(run.get("partial") for run in good),
        # the detail of the round whose value is the median (the upper one of an even count)
        "detail": sorted(good, key=lambda run: run["value"])[len(good) // 2].get("detail", ""),
    }


def add_paired_ratios(summary: dict[str, dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """For variants run back to back in each round: the reference's value over each other
    variant's in the same round, and their median (``paired``). On a shared machine whose speed
    drifts from one minute to the next, a round's two runs see about the same machine, so this
    median is steadier than the ratio of the two medians."""
    for ref in REFERENCES:
        if ref not in runs:
            continue
        for name, own in runs.items():
            if name == ref:
                continue
            ratios = [
                mine["value"] / theirs["value"]
                for mine, theirs in zip(runs[ref], own, strict=False)
                if mine.get("ok") and theirs.get("ok") and theirs["value"]
            ]
            if ratios and summary[name].get("value") is not None:
                summary[name]["paired"] = {"ref": ref, "median": statistics.median(ratios), "rounds": ratios}


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(scenario: ModuleType, summary: dict[str, dict[str, Any]]) -> Table:
    refs = [ref for ref in REFERENCES if ref in summary]
    out = Table(title=scenario.TITLE, title_justify="left")
    out.add_column("system")
    out.add_column(scenario.UNIT, justify="right")
    out.add_column("detail")
    for ref in refs:
        out.add_column(f"{ref} / this", justify="right")
    any_partial = False
    for name, figures in summary.items():
        value = figures["value"]
        if value is None:
            out.add_row(name, "[red]failed[/red]", figures["failed"][:60], *["" for _ in refs])
            continue
        mark = "*" if figures.get("partial") else ""
        any_partial = any_partial or bool(mark)
        ratios = []
        for ref in refs:
            ref_value = summary[ref]["value"]
            if ref == name or ref_value is None or not value:
                ratios.append("")
            else:
                ratio = f"{ref} / {name} = {ref_value / value:.2f}x"
                paired = figures.get("paired")
                if paired and paired["ref"] == ref:
                    each = ", ".join(f"{r:.2f}" for r in paired["rounds"])
                    ratio += f"; by round {each}: median {paired['median']:.2f}x"
                ratios.append(ratio)
        out.add_row(name, _fmt(value) + mark, str(figures.get("detail", "")), *ratios)
    notes = []
    if any_partial:
        notes.append("* did not finish within the time limit: rate over the jobs done")
    notes.append("median over rounds; " + ("higher is better" if scenario.HIGHER_IS_BETTER else "lower is better"))
    out.caption = "; ".join(notes)
    out.caption_justify = "left"
    return out


def print_table(console: Console, scenario: ModuleType, summary: dict[str, dict[str, Any]]) -> None:
    console.print()
    console.print(table(scenario, summary))


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def write_chart(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results["scenarios"]
    count = len(scenarios)
    if not count:
        return
    columns = min(3, count)
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.0 * rows), squeeze=False)
    for ax, (name, data) in zip(axes.flat, scenarios.items(), strict=False):
        systems = list(data["summary"])
        values = [data["summary"][s]["value"] or 0.0 for s in systems]
        colors = ["tab:orange" if s.startswith("taskemit") else "tab:blue" for s in systems]
        bars = ax.bar(range(len(systems)), values, color=colors)
        ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=8)
        better = "higher" if data["higher_is_better"] else "lower"
        ax.set_title(f"{name} ({data['unit']}, {better} is better)", fontsize=9)
        for bar, system in zip(bars, systems, strict=True):
            value = data["summary"][system]["value"]
            label = "failed" if value is None else _fmt(value)
            ax.annotate(
                label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7
            )
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    mode = "quick" if results["config"]["quick"] else "full"
    fig.suptitle(f"taskemit vs peers ({mode} run, {results['machine']['cpu_count']} CPUs)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
