"""``python -m bench [--quick] [--only overhead,errors,...] [--output BENCHMARKS.md]``.

Runs the cases in order, then writes the report (and ``results.json`` next to the
databases and worker logs in the run directory).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.configs import Endpoints
from bench.context import Context, Plan
from bench.db import postgres_url, sqlite_template
from bench.procs import Processes, closed_port

RESULTS_PICKLE = "results.pickle"
CASES = ("overhead", "diagnose", "errors", "throughput", "campaigns", "outage", "scrubbing")
REPO = Path(__file__).resolve().parent.parent


def _default_run_dir() -> Path:
    # Databases on tmpfs when there is one: disk flushes are noise, not telemetry cost.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"bench-{os.getuid()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, under a minute")
    parser.add_argument(
        "--only",
        default=",".join(CASES),
        help=f"comma list of cases to run (default: all of {', '.join(CASES)})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "BENCHMARKS.md",
        help="the report to write (default: BENCHMARKS.md at the repository root)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="databases, logs and results.json (default: /dev/shm/bench-$UID or the temp dir)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the report from the last run's saved results (no measuring)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; valid: {', '.join(CASES)}")
    return args


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _run(
    plan: Plan, run_dir: Path, selected: list[str], template: Path, pg_url: str | None
) -> tuple[dict[str, Any], list[str]]:
    results: dict[str, Any] = {}
    async with Processes(run_dir) as procs:
        sink_port = await procs.start_sink()
        simulator_url = await procs.start_simulator()
        ctx = Context(
            plan=plan,
            run_dir=run_dir,
            procs=procs,
            template=template,
            endpoints=Endpoints(sink_port, closed_port()),
            simulator_url=simulator_url,
            postgres_url=pg_url,
        )
        async with ctx.clients:
            for case in selected:
                _log(f"case {case}...")
                began = time.monotonic()
                module = importlib.import_module(f"bench.{case}")
                results[case] = await module.run(ctx)
                _log(f"case {case} done in {time.monotonic() - began:.0f} s")
        results["sink"] = await procs.sink_counts()
    return results, ctx.notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare (databases: blocking, before the event loop), run the cases, save results."""
    plan = Plan.quick_plan() if args.quick else Plan.full()
    run_dir: Path = args.run_dir or _default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    selected = [case for case in CASES if case in args.only.split(",")]
    started = dt.datetime.now(dt.UTC)
    _log(f"run directory {run_dir}; cases: {', '.join(selected)}")
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    code = machine.code_version()
    template = sqlite_template(run_dir)
    pg_url = postgres_url() if "throughput" in selected else None
    results, notes = asyncio.run(_run(plan, run_dir, selected, template, pg_url))
    results.update(
        started=started.isoformat(timespec="seconds"),
        plan=plan,
        load_start=load_start,
        code=code,
        notes=notes,
        seconds=(dt.datetime.now(dt.UTC) - started).total_seconds(),
        load_end=" ".join(f"{x:.2f}" for x in os.getloadavg()),
    )
    (run_dir / "results.json").write_text(json.dumps(report.jsonable(results), indent=1))
    with open(run_dir / RESULTS_PICKLE, "wb") as out:
        pickle.dump(results, out)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render_only:
        # The last run's results again, e.g. after editing bench/FINDINGS.md.
        with open((args.run_dir or _default_run_dir()) / RESULTS_PICKLE, "rb") as saved:
            results = pickle.load(saved)
    else:
        results = run(args)
    text = report.render(results)
    args.output.write_text(text)
    _log(f"wrote {args.output} ({results['seconds']:.0f} s)")
    print(report.summary_table(results))


if __name__ == "__main__":
    main()
