"""The table and the goals, from the results one run collected."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

MIB = 2**20


@dataclass(frozen=True)
class Goal:
    name: str
    measured: float | None
    target: float
    unit: str
    higher_is_better: bool = True
    info: bool = False  # shown for comparison, no verdict

    @property
    def met(self) -> bool | None:
        if self.measured is None or self.info:
            return None
        if self.higher_is_better:
            return self.measured >= self.target
        return self.measured <= self.target

    def to_json(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "measured": None if self.measured is None else round(self.measured, 3),
            "target": self.target,
            "unit": self.unit,
            "met": self.met,
            **({"info": True} if self.info else {}),
        }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _rate_cell(runs: list[dict[str, Any]], key: str) -> str:
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    if not values:
        return f"{'-':>10}  {'':19}"
    spread = f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else ""
    return f"{statistics.median(values):>10,.0f}  {spread:19}"


def _rss_cell(runs: list[dict[str, Any]]) -> str:
    value = median_of(runs, "peak_rss_mb")
    return f"{value:>8.0f} MB" if value is not None else f"{'':>11}"


def _cpu_cell(runs: list[dict[str, Any]]) -> str:
    value = median_of(runs, "entries_per_cpu_s") or median_of(runs, "records_per_cpu_s")
    return f"{value:>12,.0f}" if value is not None else f"{'':>12}"


def scenario_lines(results: dict[str, Any]) -> list[str]:
    header = (
        f"{'scenario':<58}{'per second':>10}  {'runs min-max':19}{'peak RSS':>11}{'per CPU-s':>12}"
    )
    lines = [header, "-" * len(header)]
    for scenario in results["scenarios"]:
        runs = scenario["runs"]
        key = "records_per_s" if scenario.get("unit") == "records" else "entries_per_s"
        lines.append(
            f"{scenario['title']:<58}{_rate_cell(runs, key)}{_rss_cell(runs)}{_cpu_cell(runs)}"
        )
    latency = results.get("latency")
    if latency:
        lines.append(
            f"{'produce→accepted at ' + format(latency['rate_per_s'], ',.0f') + '/s':<58}"
            f"p50 {latency['p50_ms']} ms, p90 {latency['p90_ms']} ms, "
            f"p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms "
            f"(first {latency['warm_up_seconds']:.0f} s: p99 {latency['warm_up_p99_ms']} ms)"
        )
    return lines


def goal_lines(goals: list[Goal]) -> list[str]:
    lines = []
    for goal in goals:
        measured = "-" if goal.measured is None else f"{goal.measured:,.2f}"
        if goal.info:
            lines.append(f"  {goal.name:<66} {measured:>10} {goal.unit}")
            continue
        sign = ">=" if goal.higher_is_better else "<="
        verdict = {True: "met", False: "NOT met", None: "not measured"}[goal.met]
        lines.append(
            f"  {goal.name:<66} {measured:>10} {sign} {goal.target:,.2f} {goal.unit:<9} {verdict}"
        )
    return lines


def render(results: dict[str, Any], goals: list[Goal]) -> str:
    machine = results["machine"]
    title = (
        f"kafka-eventbridge benchmark: broker {results['broker']}, {machine['cpus']} cores, "
        f"scale {results['scale']}, medians of {results['repeat']} runs, "
        f"load average before {machine['load_average_before']:.2f}"
    )
    return "\n".join([title, "", *scenario_lines(results), "", "goals", *goal_lines(goals)])
