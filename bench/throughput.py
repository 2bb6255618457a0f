"""Case 3: webhooks per second over loopback, uvicorn with one worker process.

The parent keeps ``concurrency`` webhook requests in flight (keep-alive connections) for
a fixed time per window, alternating telemetry off and OTel at 10%, on SQLite and, when
``TEST_POSTGRES_URL`` is set (``eval "$(scripts/pg_start.sh)"``), on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import workload
from bench.context import Context
from bench.drive import rotated
from bench.procs import Worker
from bench.report import Goal, Section, table, times
from bench.stats import DASH, Summary, fmt, ratio

CONFIGS = ("off", "otel10")
SEQUENTIAL = "off, 1 in flight"
MAX_RATE = 1500  # webhooks/s: seeds enough calls that every request finds its call


@dataclass
class Window:
    config: str
    completed: int
    failed: int
    seconds: float
    lat_ms: list[float]
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else math.nan


@dataclass
class ThroughputResult:
    concurrency: int
    windows: dict[str, list[Window]] = field(default_factory=dict)  # database -> windows
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            db: {
                config: {
                    "rates": [w.rate for w in ws if w.config == config],
                    "failed": sum(w.failed for w in ws if w.config == config),
                }
                for config in CONFIGS
            }
            for db, ws in self.windows.items()
        } | {"skipped": self.skipped}


async def _window(
    ctx: Context,
    worker: Worker,
    pool: str,
    cursor: list[int],
    limit: int,
    seconds: float,
    concurrency: int,
) -> Window:
    client = ctx.clients.get(worker)
    latencies: list[float] = []
    completed = failed = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def one_client() -> None:
        nonlocal completed, failed
        while loop.time() < deadline and cursor[0] < limit:
            index = cursor[0]
            cursor[0] += 1
            body = workload.webhook_body(pool, index)
            began = time.perf_counter()
            try:
                response = await client.post(
                    workload.webhook_path(),
                    content=body,
                    headers={"content-type": "application/json"},
                )
                ok = response.status_code in (200, 202)
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - began) * 1000)
            if ok:
                completed += 1
            else:
                failed += 1

    cpu_before = (await worker.call({"cmd": "cpu"}))["cpu_ns"]
    began = loop.time()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = loop.time() - began
    cpu_after = (await worker.call({"cmd": "cpu"}))["cpu_ns"]
    cpu_s = (cpu_after - cpu_before) / 1e9
    return Window(worker.name, completed, failed, elapsed, latencies, cpu_s)


async def _measure(ctx: Context, database: str, urls: dict[str, str | None]) -> list[Window]:
    plan = ctx.plan
    per_worker = int(MAX_RATE * plan.throughput_seconds * (plan.throughput_rounds + 1))
    workers: dict[str, Worker] = {}
    cursors: dict[str, list[int]] = {}
    windows: list[Window] = []
    try:
        for config in CONFIGS:
            name = f"tp-{database}-{config}"
            workers[config] = await ctx.start_worker(
                name,
                config=config,
                pools={name: workload.calls_needed(per_worker)},
                database_url=urls[config],
                db_pool_size=20,
            )
            cursors[config] = [0]
        for config in CONFIGS:
            worker = workers[config]
            await _window(
                ctx,
                worker,
                worker.name,
                cursors[config],
                per_worker,
                plan.throughput_warmup,
                plan.throughput_concurrency,
            )
        for round_index in range(plan.throughput_rounds):
            for config in rotated(list(CONFIGS), round_index):
                worker = workers[config]
                window = await _window(
                    ctx,
                    worker,
                    worker.name,
                    cursors[config],
                    per_worker,
                    plan.throughput_seconds,
                    plan.throughput_concurrency,
                )
                window.config = config
                windows.append(window)
        # One window with a single request in flight: what concurrency adds or costs.
        worker = workers["off"]
        window = await _window(
            ctx, worker, worker.name, cursors["off"], per_worker, plan.throughput_seconds, 1
        )
        window.config = SEQUENTIAL
        windows.append(window)
    finally:
        for worker in workers.values():
            await ctx.procs.stop_worker(worker)
    return windows


async def run(ctx: Context) -> ThroughputResult:
    result = ThroughputResult(concurrency=ctx.plan.throughput_concurrency)
    result.windows["SQLite"] = await _measure(ctx, "sqlite", dict.fromkeys(CONFIGS))
    if ctx.postgres_url:
        urls: dict[str, str | None] = dict.fromkeys(CONFIGS, ctx.postgres_url)
        result.windows["PostgreSQL"] = await _measure(ctx, "pg", urls)
    else:
        result.skipped["PostgreSQL"] = (
            'not measured: TEST_POSTGRES_URL not set (eval "$(scripts/pg_start.sh)" first)'
        )
    return result


def section(result: ThroughputResult) -> Section:
    goals: list[Goal] = []
    rows = []
    for database, windows in result.windows.items():
        rates: dict[str, float] = {}
        for config in (*CONFIGS, SEQUENTIAL):
            own = [w for w in windows if w.config == config]
            if not own:
                continue
            rate = statistics.median([w.rate for w in own]) if own else math.nan
            rates[config] = rate
            lat = Summary.of([x for w in own for x in w.lat_ms])
            cpu = sum(w.cpu_s for w in own) / max(sum(w.completed for w in own), 1) * 1e6
            rows.append(
                [
                    database,
                    f"`{config}`",
                    fmt(rate, 0),
                    ", ".join(fmt(w.rate, 0) for w in own),
                    fmt(lat.median),
                    fmt(lat.p99),
                    fmt(cpu, 0),
                    str(sum(w.failed for w in own)),
                ]
            )
        r = ratio(rates["otel10"], rates["off"])
        goals.append(
            Goal(
                "3 throughput",
                f"webhooks/s over loopback, {database}: OTel 10% vs off",
                f"{fmt(rates['off'], 0)} → {fmt(rates['otel10'], 0)}/s ({times(r)})",
                None,
                "no goal in issue 7; reported",
            )
        )
    for database, reason in result.skipped.items():
        goals.append(
            Goal("3 throughput", f"webhooks/s over loopback, {database}", "", None, reason)
        )
        rows.append([database, DASH, reason, "", "", "", "", ""])
    text = "\n".join(
        [
            "## 3. Webhook throughput",
            "",
            f"uvicorn, one worker process, {result.concurrency} requests in flight from "
            "keep-alive loopback connections; windows alternate between configurations. "
            "Each webhook is stored and processed (two transactions). The last row per "
            "database keeps a single request in flight, for reference.",
            "",
            table(
                [
                    "database",
                    "telemetry",
                    "webhooks/s (median)",
                    "per window",
                    "median ms",
                    "p99 ms",
                    "CPU µs/webhook",
                    "failed",
                ],
                rows,
            ),
        ]
    )
    return text, goals
