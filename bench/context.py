"""What every case gets: the plan (sizes for quick or full), the processes, the databases.

ctx = Context(plan=Plan.full(), run_dir=..., procs=procs, ...)
worker = await ctx.start_worker("off", pools={"inproc": 500})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.configs import Endpoints
from bench.db import sqlite_copy
from bench.drive import LoopbackClients
from bench.procs import Processes, Worker


@dataclass(frozen=True)
class Plan:
    """How much each case measures. ``quick`` keeps the whole run under a minute."""

    quick: bool
    overhead_configs: tuple[str, ...]
    overhead_rounds: int
    overhead_batch: int
    overhead_warmup: int
    profile_requests: int
    diagnose_rounds: int
    diagnose_batch: int
    micro_iterations: int
    storm_seconds: float
    storm_rate: int
    storm_window: int
    throughput_seconds: float
    throughput_rounds: int
    throughput_concurrency: int
    throughput_warmup: float
    campaign_sizes: tuple[int, ...]
    campaign_sample: int
    outage_requests: int
    outage_batch: int
    outage_warmup: int
    scrub_repeat: int

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            overhead_configs=(
                "off",
                "off_b",
                "otel100",
                "otel10",
                "otel100_stock",
                "span_processor",
                "sentry_native",
            ),
            overhead_rounds=18,
            overhead_batch=20,
            overhead_warmup=80,
            profile_requests=80,
            diagnose_rounds=8,
            diagnose_batch=40,
            micro_iterations=20_000,
            storm_seconds=5.0,
            storm_rate=10_000,
            storm_window=150,
            throughput_seconds=3.0,
            throughput_rounds=3,
            throughput_concurrency=16,
            throughput_warmup=1.0,
            campaign_sizes=(1_000, 10_000, 100_000),
            campaign_sample=500,
            outage_requests=20_000,
            outage_batch=1000,
            outage_warmup=200,
            scrub_repeat=300,
        )

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            overhead_configs=("off", "otel100", "otel10", "span_processor", "sentry_native"),
            overhead_rounds=3,
            overhead_batch=10,
            overhead_warmup=10,
            profile_requests=0,
            diagnose_rounds=0,
            diagnose_batch=0,
            micro_iterations=1_000,
            storm_seconds=1.0,
            storm_rate=10_000,
            storm_window=40,
            throughput_seconds=1.0,
            throughput_rounds=1,
            throughput_concurrency=16,
            throughput_warmup=0.3,
            campaign_sizes=(1_000, 10_000),
            campaign_sample=60,
            outage_requests=300,
            outage_batch=100,
            outage_warmup=30,
            scrub_repeat=50,
        )


@dataclass
class Context:
    plan: Plan
    run_dir: Path
    procs: Processes
    template: Path
    endpoints: Endpoints
    simulator_url: str
    postgres_url: str | None
    clients: LoopbackClients = field(default_factory=LoopbackClients)
    notes: list[str] = field(default_factory=list)

    async def start_worker(
        self,
        name: str,
        *,
        config: str | None = None,
        pools: dict[str, int] | None = None,
        database_url: str | None = None,
        **extra: Any,
    ) -> Worker:
        """A worker for ``config`` (default: ``name``) on its own SQLite copy by default."""
        spec: dict[str, Any] = {
            "config": config or name,
            "tag": name,
            "sink_port": self.endpoints.sink_port,
            "closed_port": self.endpoints.closed_port,
            "bolna_url": self.simulator_url,
            "database_url": database_url or sqlite_copy(self.template, self.run_dir, name),
            "pools": pools or {},
            **extra,
        }
        return await self.procs.start_worker(name, spec)
