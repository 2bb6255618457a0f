"""Case 5: telemetry backends down: p99 latency, failed requests and memory vs healthy.

Two workers, same app, same requests: spans to OTLP and to Sentry's OTLP endpoint, errors
to Sentry, 100% sampling, every error sent (no dedupe). ``healthy`` points all of it at
the sink, ``outage`` at a loopback port nothing listens on (connection refused at once).
Webhook requests in-process, one in 20 without an execution id (a 400 the app reports as
an error event), in batches run side by side (both workers at once, so both see the same
load at the same instant); RSS read after every round.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from bench import workload
from bench.context import Context
from bench.drive import Batch, Series, inproc_batch
from bench.procs import Worker
from bench.report import Goal, Section, label, table, times
from bench.stats import TIMES, fmt, ratio

CONFIGS = ("healthy", "outage")
P99_GOAL = 1.1
RSS_GOAL = 1.1


@dataclass
class OutageResult:
    requests: int
    series: Series = field(default_factory=Series)
    rss_kb: dict[str, list[int]] = field(default_factory=dict)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "comparison": [self.series.compare(c, "healthy").as_dict() for c in CONFIGS],
            "rss_kb": self.rss_kb,
            "final": self.final,
        }


async def run(ctx: Context) -> OutageResult:
    plan = ctx.plan
    rounds = max(plan.outage_requests // plan.outage_batch, 1)
    result = OutageResult(requests=rounds * plan.outage_batch)
    pools = {"outage": workload.calls_needed(plan.outage_warmup + result.requests)}
    workers: dict[str, Worker] = {}
    try:
        for config in CONFIGS:
            workers[config] = await ctx.start_worker(config, pools=pools)
            result.rss_kb[config] = []

        async def batch(config: str, start: int, n: int) -> Batch:
            return await inproc_batch(workers[config], "webhook_mixed", "outage", start, n)

        await asyncio.gather(*(batch(c, 0, plan.outage_warmup) for c in CONFIGS))
        for round_index in range(rounds):
            start = plan.outage_warmup + round_index * plan.outage_batch
            # Side by side: both workers at once, under the same load at the same instant.
            batches = await asyncio.gather(*(batch(c, start, plan.outage_batch) for c in CONFIGS))
            for config, done in zip(CONFIGS, batches, strict=True):
                result.series.add(round_index, config, done)
                stats = await workers[config].call({"cmd": "stats"})
                result.rss_kb[config].append(stats["rss_kb"])
        for config in CONFIGS:
            stats = await workers[config].call({"cmd": "stats"})
            telemetry_status = stats.get("telemetry") or {}
            result.final[config] = {
                "rss_kb": stats["rss_kb"],
                "maxrss_kb": stats["maxrss_kb"],
                "sent": telemetry_status.get("sent"),
                "dropped": telemetry_status.get("dropped"),
                "backend_errors": telemetry_status.get("backend_errors"),
            }
    finally:
        for worker in workers.values():
            await ctx.procs.stop_worker(worker)
    return result


def section(result: OutageResult) -> Section:
    healthy = result.series.compare("healthy", "healthy")
    down = result.series.compare("outage", "healthy")
    rss_h = result.final.get("healthy", {}).get("rss_kb", 0)
    rss_o = result.final.get("outage", {}).get("rss_kb", 0)
    rss_ratio = ratio(float(rss_o), float(rss_h))
    p99_ratio = down.p99_ratio
    goals = [
        Goal(
            "5 outage",
            f"p99 latency, backends down vs healthy ≤ {P99_GOAL}{TIMES}",
            f"{times(p99_ratio)} (median {times(down.paired_ratio)})",
            None if math.isnan(p99_ratio) else p99_ratio <= P99_GOAL,
        ),
        Goal(
            "5 outage",
            "zero failed requests while the backends are down",
            f"{down.failed} failed of {down.requests:,}",
            down.failed == 0,
        ),
        Goal(
            "5 outage",
            f"RSS after {result.requests:,} requests within {(RSS_GOAL - 1) * 100:.0f}% of healthy",
            f"{rss_o / 1024:.0f} MiB vs {rss_h / 1024:.0f} MiB ({times(rss_ratio)})",
            None if math.isnan(rss_ratio) else rss_ratio <= RSS_GOAL,
        ),
    ]
    rows = []
    for comparison in (healthy, down):
        final = result.final.get(comparison.config, {})
        series_rss = result.rss_kb.get(comparison.config, [])
        growth = (series_rss[-1] - series_rss[0]) / 1024 if len(series_rss) > 1 else math.nan
        rows.append(
            [
                label(comparison.config),
                f"{comparison.requests:,}",
                fmt(comparison.summary.median),
                fmt(comparison.summary.p99),
                times(comparison.p99_ratio),
                fmt(comparison.cpu_us, 0),
                str(comparison.failed),
                fmt(final.get("rss_kb", math.nan) / 1024, 0),
                fmt(growth, 1),
                str(final.get("sent")),
                str(final.get("backend_errors")),
            ]
        )
    text = "\n".join(
        [
            "## 5. Backend outage",
            "",
            "Sentry DSN and OTLP endpoint on a closed loopback port vs a healthy sink; "
            "in-process webhooks (5% of them reported errors), batches run side by side.",
            "",
            table(
                [
                    "configuration",
                    "requests",
                    "median ms",
                    "p99 ms",
                    "p99 ratio",
                    "CPU µs/req",
                    "failed",
                    "RSS MiB",
                    "RSS growth first→last round MiB",
                    "errors sent",
                    "backend errors",
                ],
                rows,
            ),
        ]
    )
    return text, goals
