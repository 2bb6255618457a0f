"""Case 1's section of the report: tables per cell, goals, and where the time went."""

from __future__ import annotations

import math
from typing import Any

from bench.drive import Comparison
from bench.overhead import BASELINE, CELLS, OverheadResult
from bench.report import Goal, Section, label, table, times
from bench.stats import DASH, TIMES, fmt

# Goals on the in-process median latency ratio (issue 7, item 1).
RATIO_GOALS = {"otel100": 1.15, "otel10": 1.03, "span_processor": 1.30}
STOCK_REFERENCE = {"otel100": 1.24, "otel10": 1.17, "span_processor": 1.83, "sentry_native": 1.40}
CELL_TITLES = {
    ("webhook", "inproc"): "POST /webhooks/bolna, in-process",
    ("calls", "inproc"): "POST /calls, in-process",
    ("webhook", "loopback"): "POST /webhooks/bolna, loopback (uvicorn)",
    ("calls", "loopback"): "POST /calls, loopback (uvicorn)",
}


def _comparisons(result: OverheadResult, cell: tuple[str, str]) -> list[Comparison]:
    series = result.series.get(cell)
    if series is None:
        return []
    return [series.compare(config, BASELINE) for config in result.configs]


def _cell_table(comparisons: list[Comparison]) -> str:
    rows = []
    for c in comparisons:
        low, high = c.round_range
        rows.append(
            [
                label(c.config),
                str(c.summary.n),
                fmt(c.summary.median),
                fmt(c.summary.p99),
                times(c.paired_ratio),
                f"{fmt(low)}{DASH}{fmt(high)}",
                times(c.median_ratio),
                times(c.p99_ratio),
                fmt(c.cpu_us, 0),
                times(c.cpu_ratio),
                fmt(c.gc_us, 0),
                str(c.failed),
            ]
        )
    return table(
        [
            "configuration",
            "n",
            "median ms",
            "p99 ms",
            "ratio",
            "round range",
            "pooled",
            "p99 ratio",
            "CPU µs/req",
            "CPU ratio",
            "GC µs/req",
            "failed",
        ],
        rows,
    )


def _goals(result: OverheadResult) -> list[Goal]:
    goals: list[Goal] = []
    for cell in (("webhook", "inproc"), ("calls", "inproc")):
        by_config = {c.config: c for c in _comparisons(result, cell)}
        where = CELL_TITLES[cell]
        for config, limit in RATIO_GOALS.items():
            c = by_config.get(config)
            if c is None:
                continue
            r = c.paired_ratio
            met = not math.isnan(r) and r <= limit
            note = ""
            if not met and not math.isnan(r):
                note = (
                    f"over by {(r - limit) * 100:.1f} points "
                    f"(CPU ratio {times(c.cpu_ratio)}); see the profile below"
                )
            goals.append(
                Goal(
                    "1 overhead",
                    f"{where}: `{config}` ≤ {limit:.2f}{TIMES} "
                    f"(stock: {STOCK_REFERENCE[config]:.2f}{TIMES})",
                    f"{times(r)} (pooled {times(c.median_ratio)})",
                    met if not math.isnan(r) else None,
                    note,
                )
            )
        control = by_config.get("off_b")
        if control is not None:
            low, high = control.round_range
            goals.append(
                Goal(
                    "1 overhead",
                    f"{where}: A/A control, a second telemetry-off worker",
                    f"{times(control.paired_ratio)} (CPU {times(control.cpu_ratio)}; "
                    f"rounds {fmt(low)}{DASH}{fmt(high)})",
                    None,
                    "the noise floor: differences this size mean nothing",
                )
            )
        ours, native = by_config.get("otel100"), by_config.get("sentry_native")
        if ours is not None and native is not None:
            ours_extra = ours.paired_ratio - 1
            native_extra = native.paired_ratio - 1
            met = native_extra > 0 and ours_extra <= native_extra / 2
            goals.append(
                Goal(
                    "1 overhead",
                    f"{where}: OTel 100% overhead ≤ ½ of sentry-native's",
                    f"+{ours_extra * 100:.1f}% vs +{native_extra * 100:.1f}% "
                    f"(sentry-native {times(native.paired_ratio)})",
                    met,
                    ""
                    if met
                    else f"needs ≤ +{max(native_extra, 0) * 50:.1f}%; see the profiles below",
                )
            )
    return goals


def _profile_section(result: OverheadResult) -> str:
    if not result.profiles:
        return "Profiles: not taken in quick mode."
    parts = [
        "### Where the time goes (cProfile, event-loop thread)",
        "",
        "Own time per request by package, minus the baseline's; cProfile inflates "
        "everything, so read the packages' shares, not the absolute µs. Exporter and "
        "transport threads are not in these profiles (their cost is in CPU µs/req).",
        "",
    ]
    for case in ("webhook", "calls"):
        base = result.profiles.get((BASELINE, case))
        if base is None:
            continue
        base_pkgs: dict[str, float] = base["by_package_us"]
        rows = []
        for config in result.configs:
            prof = result.profiles.get((config, case))
            if prof is None or config == BASELINE:
                continue
            pkgs: dict[str, float] = prof["by_package_us"]
            deltas = {
                pkg: pkgs.get(pkg, 0.0) - base_pkgs.get(pkg, 0.0)
                for pkg in set(pkgs) | set(base_pkgs)
            }
            biggest = sorted(deltas.items(), key=lambda kv: -kv[1])[:5]
            rows.append(
                [
                    f"`{config}`",
                    fmt(prof["total_us"] - base["total_us"], 0),
                    ", ".join(f"{pkg} {fmt(us, 0)}" for pkg, us in biggest if us > 1),
                ]
            )
        parts += [
            f"**{case}** (baseline total {fmt(base['total_us'], 0)} µs/request under cProfile):",
            "",
            table(["configuration", "extra µs/req", "largest extra by package (µs/req)"], rows),
            "",
        ]
    for config in result.configs:
        for case in ("webhook", "calls"):
            prof = result.profiles.get((config, case))
            frames = (prof or {}).get("top_telemetry", [])[:10]
            if config == BASELINE or not frames:
                continue
            parts += [
                f"<details><summary><code>{config}</code>, {case}: top telemetry frames "
                f"(own µs/request under cProfile)</summary>",
                "",
                table(
                    ["function", "own µs", "cum µs", "calls/req"],
                    (
                        [
                            f"`{f['function']}`",
                            fmt(f["own_us"], 1),
                            fmt(f["cum_us"], 1),
                            fmt(f["calls_per_request"], 1),
                        ]
                        for f in frames
                    ),
                ),
                "",
                "</details>",
                "",
            ]
    return "\n".join(parts)


def section(result: OverheadResult) -> Section:
    parts = [
        "## 1. Request overhead",
        "",
        f"Baseline `{BASELINE}`: telemetry off (`OTEL_TRACES_EXPORTER=none`, error backend "
        f"none). Goals apply to the in-process median ratio. {len(result.configs)} "
        f"configurations, measured in {result.seconds:.0f} s.",
        "",
    ]
    for cell in CELLS:
        comparisons = _comparisons(result, cell)
        if comparisons:
            parts += [f"### {CELL_TITLES[cell]}", "", _cell_table(comparisons), ""]
    if result.rss_kb:
        parts += [
            "Worker RSS after the case: "
            + ", ".join(f"`{k}` {v / 1024:.0f} MiB" for k, v in result.rss_kb.items()),
            "",
        ]
    parts.append(_profile_section(result))
    return "\n".join(parts), _goals(result)


def as_dict(result: OverheadResult) -> dict[str, Any]:
    return {"/".join(cell): [c.as_dict() for c in _comparisons(result, cell)] for cell in CELLS}
