"""BENCHMARKS.md from a run's results: machine, per-case tables, goals met or missed.

    text = render(results)          # the whole report
    print(summary_table(results))   # the goals table alone (printed after a run)

Each case section comes from a ``section_<case>(result)`` function returning its markdown
and the goals it judged; ``render`` assembles them in run order.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine
from bench.configs import LABELS
from bench.stats import DASH, TIMES, fmt

MEASURED_NOTHING = "not measured"
# Hand-written analysis of a full run (causes, profiles, proposed fixes), appended as is
# to full reports (a quick run's figures are too few to bear it out).
FINDINGS = Path(__file__).with_name("FINDINGS.md")


@dataclass(frozen=True)
class Goal:
    case: str
    goal: str
    measured: str
    met: bool | None  # None: not measured, or information only
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return MEASURED_NOTHING if not self.measured else "info"
        return "met" if self.met else "**missed**"


Section = tuple[str, list[Goal]]


def jsonable(value: Any) -> Any:
    """Results as JSON: dataclasses to dicts, tuple keys joined with '/'."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "as_dict"):
            return jsonable(value.as_dict())
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {
            "/".join(map(str, k)) if isinstance(k, tuple) else str(k): jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def label(config: str) -> str:
    return f"`{config}` ({LABELS.get(config, config)})"


def times(value: float) -> str:
    return DASH if math.isnan(value) else f"{value:.2f}{TIMES}"


SECTION_MODULES = {
    "overhead": "bench.overhead_report",
    "diagnose": "bench.diagnose",
    "errors": "bench.errors",
    "throughput": "bench.throughput",
    "campaigns": "bench.campaigns",
    "outage": "bench.outage",
    "scrubbing": "bench.scrubbing",
}


def _section_renderer(case: str) -> Callable[[Any], Section]:
    module = importlib.import_module(SECTION_MODULES[case])
    render: Callable[[Any], Section] = module.section
    return render


def _all_goals(results: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    parts: list[str] = []
    goals: list[Goal] = []
    for case in SECTION_MODULES:
        if case not in results:
            continue
        text, case_goals = _section_renderer(case)(results[case])
        parts.append(text)
        goals += case_goals
    return parts, goals


def summary_table(results: dict[str, Any]) -> str:
    _, goals = _all_goals(results)
    return goals_table(goals)


def goals_table(goals: list[Goal]) -> str:
    return table(
        ["Case", "Goal", "Measured", "Verdict", "Note"],
        ([g.case, g.goal, g.measured or DASH, g.verdict, g.note] for g in goals),
    )


def _machine_section(results: dict[str, Any]) -> str:
    info = machine.describe()
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    plan = results["plan"]
    mode = "quick (`make bench-quick`)" if plan.quick else "full (`make bench`)"
    return "\n".join(
        [
            "## Machine and software",
            "",
            f"- Date: {results['started']} (UTC); mode: {mode}; "
            f"run time {results['seconds']:.0f} s",
            f"- CPU: {info['cpu_model']}, {info['cpus']} logical CPUs; RAM "
            f"{info['memory_gib']} GiB; Linux {info['kernel']}",
            f"- Load average at the start of the run: {results.get('load_start', '?')}; "
            f"at the end: {results.get('load_end', info['load'])} (other work on the machine "
            "shows up as noise)",
            f"- Code measured: commit {results.get('code', 'unknown')}",
            f"- {info['implementation']} {info['python']}; {versions}",
        ]
    )


HOW_TO_READ = """\
## How to read this

- Every configuration runs in its own worker process (same app, same database schema and
  seed, same requests); the parent drives them in rounds, one batch per configuration per
  round, the order rotated each round (A/B interleaved). Ratios compare figures from the
  same run.
- **ratio** is the median of the per-round ratios (configuration's median latency over the
  baseline's median in the same round): robust to load that drifts during the run. The
  round range shows the spread. *pooled* is the ratio of the medians over all rounds.
- **CPU µs/req** is the worker process's CPU time (all threads: event loop, SQLite,
  exporters) per request: less sensitive to other load on the machine than latency.
  **GC µs/req** is the part of it spent in the cyclic garbage collector.
- Exporters send to a local sink over loopback (`bench.sink`), so serialisation and HTTP
  costs of the batch processor and of sentry-sdk's transport are paid as in production.
- Noise: on this 2-CPU machine, shared with other work, the same ratio moved by up to
  ±5 points between two full runs; read smaller differences (and verdicts that close to
  a goal) as noise. The per-round range shows how wide single rounds swing.
- SQLite files live on tmpfs when available: disk flushes would add noise, not telemetry
  cost, and a cheaper baseline makes ratios stricter, not kinder.
"""


def render(results: dict[str, Any]) -> str:
    parts, goals = _all_goals(results)
    notes = results.get("notes") or []
    head = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`; `make bench-quick` for a one-minute "
        "smoke run). Benchmarks, not tests: nothing fails on a slow machine. The goals come "
        "from issue 7.",
        "",
        _machine_section(results),
        "",
        "## Summary",
        "",
        goals_table(goals),
        "",
        HOW_TO_READ,
    ]
    tail = ["## Notes", "", *(f"- {note}" for note in notes)] if notes else []
    if FINDINGS.is_file() and not results["plan"].quick:
        tail = [FINDINGS.read_text().rstrip(), "", *tail]
    return "\n".join([*head, *("\n" + part for part in parts), "", *tail]).rstrip() + "\n"


def ms(value: float) -> str:
    return fmt(value, 2)
