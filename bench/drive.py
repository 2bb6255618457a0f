"""Driving workers: sequential batches in-process or over loopback, interleaved in rounds.

    batch = await inproc_batch(worker, "webhook", "inproc", start=0, n=100)
    async with LoopbackClients() as clients:
        batch = await loopback_batch(clients, worker, "calls", "loop", start=0, n=100)

``Series`` collects the batches of one cell (an endpoint in one mode) per configuration,
round by round, and reduces them to the figures the report shows.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from bench import workload
from bench.procs import Worker
from bench.stats import Summary, ratio, spread

OK_STATUSES = {"webhook": (200, 202), "calls": (201,)}


@dataclass
class Batch:
    lat_ns: list[int]
    cpu_ns: int
    failed: int
    gc_ns: int = 0

    @property
    def n(self) -> int:
        return len(self.lat_ns)

    def median_ms(self) -> float:
        return statistics.median(self.lat_ns) / 1e6 if self.lat_ns else math.nan


async def inproc_batch(worker: Worker, case: str, pool: str, start: int, n: int) -> Batch:
    reply = await worker.call({"cmd": "run", "case": case, "pool": pool, "start": start, "n": n})
    return Batch(reply["lat_ns"], reply["cpu_ns"], reply["failed"], reply.get("gc_ns", 0))


def _request(worker: Worker, case: str, pool: str, index: int) -> tuple[str, bytes, dict[str, str]]:
    if case == "webhook":
        return (
            workload.webhook_path(),
            workload.webhook_body(pool, index),
            {"content-type": "application/json"},
        )
    body = {"agent_id": worker.info["agent_id"], "contact_id": worker.info["contact_id"]}
    return (
        "/calls",
        json.dumps(body).encode(),
        {"content-type": "application/json", "authorization": f"Bearer {worker.info['token']}"},
    )


class LoopbackClients:
    """One keep-alive HTTP client per worker (the parent is the only client)."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}

    def get(self, worker: Worker) -> httpx.AsyncClient:
        client = self._clients.get(worker.name)
        if client is None:
            client = httpx.AsyncClient(
                base_url=worker.base_url,
                timeout=30.0,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
            )
            self._clients[worker.name] = client
        return client

    async def __aenter__(self) -> LoopbackClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


async def loopback_batch(
    clients: LoopbackClients, worker: Worker, case: str, pool: str, start: int, n: int
) -> Batch:
    client = clients.get(worker)
    requests = [_request(worker, case, pool, start + i) for i in range(n)]
    ok = OK_STATUSES[case]
    before = await worker.call({"cmd": "cpu"})
    latencies: list[int] = []
    failed = 0
    clock = time.perf_counter_ns
    for path, body, headers in requests:
        began = clock()
        try:
            response = await client.post(path, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        latencies.append(clock() - began)
        if status not in ok:
            failed += 1
    after = await worker.call({"cmd": "cpu"})
    return Batch(
        latencies, after["cpu_ns"] - before["cpu_ns"], failed, after["gc_ns"] - before["gc_ns"]
    )


@dataclass
class Series:
    """The batches of one cell: ``rounds[r][config]`` is config's batch in round r."""

    rounds: list[dict[str, Batch]] = field(default_factory=list)

    def add(self, round_index: int, config: str, batch: Batch) -> None:
        while len(self.rounds) <= round_index:
            self.rounds.append({})
        self.rounds[round_index][config] = batch

    def configs(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rounds:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def latencies_ms(self, config: str) -> list[float]:
        return [ns / 1e6 for row in self.rounds if config in row for ns in row[config].lat_ns]

    def summary(self, config: str) -> Summary:
        return Summary.of(self.latencies_ms(config))

    def failed(self, config: str) -> int:
        return sum(row[config].failed for row in self.rounds if config in row)

    def requests(self, config: str) -> int:
        return sum(row[config].n for row in self.rounds if config in row)

    def cpu_us_per_request(self, config: str) -> float:
        batches = [row[config] for row in self.rounds if config in row]
        n = sum(b.n for b in batches)
        return sum(b.cpu_ns for b in batches) / n / 1e3 if n else math.nan

    def gc_us_per_request(self, config: str) -> float:
        batches = [row[config] for row in self.rounds if config in row]
        n = sum(b.n for b in batches)
        return sum(b.gc_ns for b in batches) / n / 1e3 if n else math.nan

    def round_ratios(self, config: str, baseline: str) -> list[float]:
        """Per round: config's median over the baseline's median in the same round."""
        return [
            ratio(row[config].median_ms(), row[baseline].median_ms())
            for row in self.rounds
            if config in row and baseline in row
        ]

    def compare(self, config: str, baseline: str) -> Comparison:
        own, base = self.summary(config), self.summary(baseline)
        per_round = self.round_ratios(config, baseline)
        finite = [r for r in per_round if not math.isnan(r)]
        return Comparison(
            config=config,
            summary=own,
            median_ratio=ratio(own.median, base.median),
            paired_ratio=statistics.median(finite) if finite else math.nan,
            round_range=spread(per_round),
            p99_ratio=ratio(own.p99, base.p99),
            cpu_us=self.cpu_us_per_request(config),
            cpu_ratio=ratio(self.cpu_us_per_request(config), self.cpu_us_per_request(baseline)),
            gc_us=self.gc_us_per_request(config),
            failed=self.failed(config),
            requests=self.requests(config),
        )


@dataclass(frozen=True)
class Comparison:
    config: str
    summary: Summary
    median_ratio: float  # pooled median over pooled baseline median
    paired_ratio: float  # median of the per-round ratios (robust to drifting load)
    round_range: tuple[float, float]
    p99_ratio: float
    cpu_us: float
    cpu_ratio: float
    gc_us: float
    failed: int
    requests: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "n": self.summary.n,
            "median_ms": self.summary.median,
            "p99_ms": self.summary.p99,
            "median_ratio": self.median_ratio,
            "paired_ratio": self.paired_ratio,
            "round_range": list(self.round_range),
            "p99_ratio": self.p99_ratio,
            "cpu_us": self.cpu_us,
            "cpu_ratio": self.cpu_ratio,
            "gc_us": self.gc_us,
            "failed": self.failed,
            "requests": self.requests,
        }


def rotated(items: Sequence[str], k: int) -> list[str]:
    """``items`` rotated by ``k``: each configuration takes each position in turn."""
    if not items:
        return []
    k %= len(items)
    return [*items[k:], *items[:k]]
