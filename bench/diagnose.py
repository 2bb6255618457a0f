"""Case 1b: where request overhead comes from, by removing or changing one part at a time.

Each variant (``bench.variants``) is a worker of its own; in-process webhook and call
requests in interleaved rounds; figures are CPU time per request (all threads), which
load on the machine disturbs less than latency. The ratio is over telemetry off in the
same run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bench import workload
from bench.context import Context
from bench.drive import Series, inproc_batch, rotated
from bench.procs import Worker
from bench.report import Section, table, times
from bench.stats import DASH, fmt, ratio

# name -> (configuration, patches, telemetry settings changed, description)
VARIANTS: dict[str, tuple[str, list[str], dict[str, Any], str]] = {
    "off": ("off", [], {}, "telemetry off (baseline)"),
    "otel100": ("otel100", [], {}, "OTel 100%, as shipped (SQL as db.query events)"),
    "otel100_noop": (
        "otel100_noop",
        [],
        {},
        "100%, no-op exporter: no batch thread, no encoding",
    ),
    "otel100+sql_spans": (
        "otel100",
        [],
        {"sql_spans": "spans"},
        "100%, a span per SQL statement (TELEMETRY_SQL_SPANS=spans)",
    ),
    "otel100-no_sql": (
        "otel100",
        [],
        {"sql_spans": "off"},
        "100%, no SQL (TELEMETRY_SQL_SPANS=off)",
    ),
    "otel10": ("otel10", [], {}, "OTel 10%, as shipped"),
    "otel10-no_sql-no_httpx": (
        "otel10",
        ["no_httpx"],
        {"sql_spans": "off"},
        "10% without SQL hooks and httpx instrumentation",
    ),
}
CASES = ("webhook", "calls")
DIAGNOSE_WARMUP = 30


@dataclass
class DiagnoseResult:
    series: dict[str, Series] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            case: {
                name: {
                    "cpu_us": s.cpu_us_per_request(name),
                    "gc_us": s.gc_us_per_request(name),
                }
                for name in s.configs()
            }
            for case, s in self.series.items()
        } | {"failed": self.failed}


async def run(ctx: Context) -> DiagnoseResult:
    plan = ctx.plan
    result = DiagnoseResult()
    rounds, batch, warmup = plan.diagnose_rounds, plan.diagnose_batch, DIAGNOSE_WARMUP
    if not rounds:
        return result
    pools = {"diag": workload.calls_needed(warmup + rounds * batch)}

    async def start(name: str) -> Worker | BaseException:
        config, patches, changed, _ = VARIANTS[name]
        try:
            return await ctx.start_worker(
                f"diag-{name}", config=config, pools=pools, patches=patches, telemetry=changed
            )
        except Exception as exc:
            return exc

    names = list(VARIANTS)
    workers: dict[str, Worker] = {}
    try:
        for name, worker in zip(names, await asyncio.gather(*map(start, names)), strict=True):
            if isinstance(worker, BaseException):
                result.failed[name] = f"{type(worker).__name__}: {worker}"
            else:
                workers[name] = worker
        alive = [n for n in names if n in workers]
        for name in alive:
            for case in CASES:
                await inproc_batch(workers[name], case, "diag", 0, warmup)
        for round_index in range(rounds):
            start_at = warmup + round_index * batch
            for case in CASES:
                series = result.series.setdefault(case, Series())
                for name in rotated(alive, round_index):
                    done = await inproc_batch(workers[name], case, "diag", start_at, batch)
                    series.add(round_index, name, done)
    finally:
        for worker in workers.values():
            await ctx.procs.stop_worker(worker)
    return result


def section(result: DiagnoseResult) -> Section:
    if not result.series:
        return "### 1b. Where the overhead comes from\n\nnot measured in quick mode.\n", []
    rows = []
    for name, (_, _, _, description) in VARIANTS.items():
        cells = [f"`{name}`", description]
        for case in CASES:
            series = result.series.get(case)
            if series is None or name not in series.configs():
                cells += [DASH, DASH, DASH, DASH]
                continue
            cpu = series.cpu_us_per_request(name)
            gc_us = series.gc_us_per_request(name)
            base = series.cpu_us_per_request("off")
            base_gc = series.gc_us_per_request("off")
            cells += [
                fmt(cpu, 0),
                times(ratio(cpu, base)),
                fmt(gc_us, 0),
                times(ratio(cpu - gc_us, base - base_gc)),
            ]
        rows.append(cells)
    failed = "".join(f"\n- `{k}` failed to start: {v}" for k, v in result.failed.items())
    text = "\n".join(
        [
            "### 1b. Where the overhead comes from",
            "",
            "One part of telemetry removed or changed per worker (`bench.variants`); CPU "
            "time per in-process request, all threads. A full garbage collection now and "
            "then lands in one worker's window and not another's: *ratio without GC* "
            "leaves the collector out and is the steadier figure.",
            "",
            table(
                [
                    "variant",
                    "what",
                    "webhook CPU µs",
                    "ratio",
                    "GC µs",
                    "ratio without GC",
                    "calls CPU µs",
                    "ratio",
                    "GC µs",
                    "ratio without GC",
                ],
                rows,
            ),
        ]
    )
    return text + failed, []
