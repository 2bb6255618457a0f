"""Case 1: request overhead of each telemetry configuration, same app, same requests.

Cells: ``POST /webhooks/bolna`` (store + process, DB writes, realistic status sequences)
and ``POST /calls`` (auth, credit check, insert, Bolna simulator over loopback with zero
latency, update), each in-process (``httpx.ASGITransport``) and over loopback (uvicorn on
127.0.0.1, one worker). One worker process per configuration; in every round each
configuration runs one batch of every cell, in an order rotated per round.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bench import workload
from bench.context import Context
from bench.drive import Series, inproc_batch, loopback_batch, rotated
from bench.procs import Worker

BASELINE = "off"
CELLS: tuple[tuple[str, str], ...] = (
    ("webhook", "inproc"),
    ("calls", "inproc"),
    ("webhook", "loopback"),
    ("calls", "loopback"),
)
POOLS = {"inproc": "inproc", "loopback": "loop"}


@dataclass
class OverheadResult:
    configs: list[str]
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    profiles: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rss_kb: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        from bench.overhead_report import as_dict

        return {
            "comparisons": as_dict(self),
            "profiles": self.profiles,
            "rss_kb": self.rss_kb,
            "seconds": self.seconds,
        }


async def _batch(ctx: Context, worker: Worker, case: str, mode: str, start: int, n: int) -> Any:
    pool = POOLS[mode]
    if mode == "inproc":
        return await inproc_batch(worker, case, pool, start, n)
    return await loopback_batch(ctx.clients, worker, case, pool, start, n)


async def run(ctx: Context) -> OverheadResult:
    plan = ctx.plan
    configs = list(plan.overhead_configs)
    per_pool = plan.overhead_warmup + plan.overhead_rounds * plan.overhead_batch
    pools = {
        "inproc": workload.calls_needed(per_pool),
        "loop": workload.calls_needed(per_pool),
        "prof": workload.calls_needed(plan.profile_requests),
    }
    result = OverheadResult(configs=configs)
    loop = asyncio.get_running_loop()
    began = loop.time()
    workers: dict[str, Worker] = {}
    try:
        started = await asyncio.gather(
            *(ctx.start_worker(name, pools=pools) for name in configs), return_exceptions=True
        )
        for name, worker in zip(configs, started, strict=True):
            if isinstance(worker, BaseException):
                raise worker
            workers[name] = worker
        for name in configs:
            for case, mode in CELLS:
                await _batch(ctx, workers[name], case, mode, 0, plan.overhead_warmup)
        await ctx.procs.reset_simulator()
        for round_index in range(plan.overhead_rounds):
            start = plan.overhead_warmup + round_index * plan.overhead_batch
            for cell in CELLS:
                series = result.series.setdefault(cell, Series())
                for name in rotated(configs, round_index):
                    batch = await _batch(ctx, workers[name], *cell, start, plan.overhead_batch)
                    series.add(round_index, name, batch)
            await ctx.procs.reset_simulator()
        if plan.profile_requests:
            for name in configs:
                for case in ("webhook", "calls"):
                    result.profiles[(name, case)] = await workers[name].call(
                        {
                            "cmd": "profile",
                            "case": case,
                            "pool": "prof",
                            "start": 0,
                            "n": plan.profile_requests,
                            "top": 25,
                        }
                    )
        for name in configs:
            stats = await workers[name].call({"cmd": "stats"})
            result.rss_kb[name] = stats["rss_kb"]
    finally:
        for worker in workers.values():
            await ctx.procs.stop_worker(worker)
        await ctx.procs.reset_simulator()
    result.seconds = loop.time() - began
    return result
