"""Where the outage case's extra memory goes: tracemalloc, healthy vs outage workers.

    python -m bench.outage_memory [--requests 6000] [--batch 500] [--frames 8] [--top 25]
                                  [--patch no_breaker]

Runs case 5's workload (``bench.outage``: in-process mixed webhooks, both workers side by
side) with tracemalloc on in both workers, then dumps a snapshot of each (after a full
collection) and prints what the outage worker holds that the healthy one does not:
by file, then by traceback (the first frame of each that is not in the standard
library or an SDK is shown with the allocating one). Diagnostic only: tracemalloc slows
the workers down and adds its own memory; RSS and traced memory are printed per round
so a flat outage-minus-healthy gap (full buffers) can be told from a growing one (a leak).
Standard ``OTEL_*`` variables in the environment reach both workers.
"""

from __future__ import annotations

import argparse
import asyncio
import linecache
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from bench import workload
from bench.__main__ import _default_run_dir
from bench.configs import Endpoints
from bench.context import Context, Plan
from bench.db import sqlite_template
from bench.drive import inproc_batch
from bench.outage import CONFIGS
from bench.procs import Processes, Worker, closed_port

OURS = ("/telemetry/", "/app/", "/bench/")


def _where(trace: tracemalloc.Traceback) -> str:
    """The allocating frame, and the innermost of our own frames above it."""
    frames = list(trace)  # most recent call first (tracemalloc's default order)
    first = frames[0]
    text = f"{first.filename}:{first.lineno}"
    line = linecache.getline(first.filename, first.lineno).strip()
    if line:
        text += f"  `{line[:90]}`"
    ours = next((f for f in frames[1:] if any(part in f.filename for part in OURS)), None)
    if ours is not None:
        text += f"\n        via {ours.filename}:{ours.lineno}"
    return text


def compare(healthy: Path, outage: Path, top: int) -> str:
    """Top differences outage - healthy, by file and by traceback."""
    old = tracemalloc.Snapshot.load(str(healthy))
    new = tracemalloc.Snapshot.load(str(outage))
    noise = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old, new = old.filter_traces(noise), new.filter_traces(noise)
    lines = []
    total_old = sum(s.size for s in old.statistics("filename"))
    total_new = sum(s.size for s in new.statistics("filename"))
    lines.append(
        f"traced: healthy {total_old / 2**20:.1f} MiB, outage {total_new / 2**20:.1f} MiB, "
        f"difference {(total_new - total_old) / 2**20:+.1f} MiB"
    )
    for key in ("filename", "traceback"):
        lines.append(f"\n## by {key} (outage - healthy, top {top})")
        diffs = sorted(new.compare_to(old, key), key=lambda d: -abs(d.size_diff))
        for diff in diffs[:top]:
            where = (
                _where(diff.traceback) if key == "traceback" else str(diff.traceback[0].filename)
            )
            lines.append(
                f"{diff.size_diff / 1024:+9.0f} KiB {diff.count_diff:+7d} blocks "
                f"(outage {diff.size / 1024:.0f} KiB)  {where}"
            )
    return "\n".join(lines)


async def _measure(args: argparse.Namespace, run_dir: Path, template: Path) -> dict[str, Path]:
    async with Processes(run_dir) as procs:
        sink_port = await procs.start_sink()
        simulator_url = await procs.start_simulator()
        ctx = Context(
            plan=Plan.quick_plan(),
            run_dir=run_dir,
            procs=procs,
            template=template,
            endpoints=Endpoints(sink_port, closed_port()),
            simulator_url=simulator_url,
            postgres_url=None,
        )
        rounds = max(args.requests // args.batch, 1)
        pools = {"outage": workload.calls_needed(args.warmup + rounds * args.batch)}
        workers: dict[str, Worker] = {}
        snapshots: dict[str, Path] = {}
        try:
            for config in CONFIGS:
                workers[config] = await ctx.start_worker(
                    config, pools=pools, tracemalloc=args.frames or None, patches=args.patches
                )

            async def batch(config: str, start: int, n: int) -> None:
                await inproc_batch(workers[config], "webhook_mixed", "outage", start, n)

            await asyncio.gather(*(batch(c, 0, args.warmup) for c in CONFIGS))
            for round_index in range(rounds):
                start = args.warmup + round_index * args.batch
                await asyncio.gather(*(batch(c, start, args.batch) for c in CONFIGS))
                rss = {c: (await workers[c].call({"cmd": "stats"}))["rss_kb"] for c in CONFIGS}
                print(
                    f"round {round_index + 1}/{rounds}: RSS "
                    + ", ".join(f"{c} {kb / 1024:.0f} MiB" for c, kb in rss.items()),
                    flush=True,
                )
            for config in CONFIGS:
                stats = await workers[config].call({"cmd": "stats", "trim": True})
                print(
                    f"{config}: RSS {stats['rss_kb'] / 1024:.1f} MiB, after gc "
                    f"{stats['rss_after_gc_kb'] / 1024:.1f}, after malloc_trim "
                    f"{stats.get('rss_after_trim_kb', 0) / 1024:.1f}; "
                    f"{stats['pymalloc_blocks']:,} Python blocks; exports "
                    f"{(stats.get('telemetry') or {}).get('exports')}",
                    flush=True,
                )
            if not args.frames:
                return snapshots
            for config in CONFIGS:
                path = run_dir / f"tracemalloc-{config}.snap"
                reply = await workers[config].call({"cmd": "tracemalloc", "path": str(path)})
                print(f"{config}: {reply}", flush=True)
                snapshots[config] = path
        finally:
            for worker in workers.values():
                await procs.stop_worker(worker)
    return snapshots


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outage_memory", description=__doc__)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--frames",
        type=int,
        default=8,
        help="traceback depth recorded; 0: no tracemalloc (full speed, RSS only)",
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--patch",
        dest="patches",
        action="append",
        default=[],
        help="a bench.variants patch for both workers, e.g. no_breaker (the old behaviour)",
    )
    parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    run_dir: Path = (args.run_dir or _default_run_dir()) / "outage-memory"
    run_dir.mkdir(parents=True, exist_ok=True)
    template = sqlite_template(run_dir)
    snapshots = asyncio.run(_measure(args, run_dir, template))
    if snapshots:
        print(compare(snapshots["healthy"], snapshots["outage"], args.top))


if __name__ == "__main__":
    main()
