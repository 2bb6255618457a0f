"""Where a configuration's time goes: cProfile over a batch, attributed by package.

    report = await profile_batch(worker, {"case": "webhook", "pool": "prof", "start": 0, "n": 200})
    report["by_package_us"]   # {"opentelemetry": 210.4, "sqlalchemy": 900.1, ...} per request
    report["top"]             # the functions with the most own time, per request

Only the event-loop thread is profiled (where requests run); exporter and transport
threads are not, their cost shows in the CPU-per-request column instead. cProfile
slows everything down by a similar factor, so compare packages across configurations
rather than reading the absolute figures.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import sysconfig
from pathlib import Path
from typing import Any

_SITE = sysconfig.get_paths()["purelib"]
_STDLIB = sysconfig.get_paths()["stdlib"]
_REPO = str(Path(__file__).resolve().parent.parent)


# Built-ins whose own time is mostly waiting, not work: kept apart from "builtins".
_WAITING = frozenset(
    {
        "<method 'poll' of 'select.epoll' objects>",
        "<method 'acquire' of '_thread.lock' objects>",
        "<method 'acquire' of '_thread.RLock' objects>",
    }
)


def package_of(filename: str) -> str:
    """The top-level package a code object belongs to (``~`` is a built-in)."""
    if filename == "~" or filename.startswith("<"):
        return "builtins"
    if filename.startswith(_SITE):
        rest = filename[len(_SITE) :].lstrip("/")
        top = rest.split("/", 1)[0]
        return top.removesuffix(".py")
    if filename.startswith(_REPO):
        rest = filename[len(_REPO) :].lstrip("/")
        return rest.split("/", 1)[0].removesuffix(".py")
    if filename.startswith(_STDLIB):
        rest = filename[len(_STDLIB) :].lstrip("/")
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    return "other"


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    short = filename
    for prefix in (_SITE, _REPO, _STDLIB):
        if filename.startswith(prefix):
            short = filename[len(prefix) :].lstrip("/")
            break
    return f"{short}:{line}({name})"


TELEMETRY_PACKAGES = ("opentelemetry", "telemetry", "sentry_sdk", "wrapt")


def summarise(profile: cProfile.Profile, requests: int, top: int = 15) -> dict[str, Any]:
    stats = pstats.Stats(profile, stream=sys.stderr)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    by_package: dict[str, float] = {}
    rows = []
    total = 0.0
    for func, (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        package = package_of(func[0])
        if package == "builtins" and func[2] in _WAITING:
            package = "waiting (epoll, locks)"
        by_package[package] = by_package.get(package, 0.0) + tottime
        total += tottime
        rows.append((tottime, cumtime, ncalls, func))
    per_request = 1e6 / max(requests, 1)
    rows.sort(key=lambda row: row[0], reverse=True)

    def describe(row: tuple[float, float, int, tuple[str, int, str]]) -> dict[str, Any]:
        tottime, cumtime, ncalls, func = row
        return {
            "function": _label(func),
            "package": package_of(func[0]),
            "own_us": tottime * per_request,
            "cum_us": cumtime * per_request,
            "calls_per_request": ncalls / max(requests, 1),
        }

    return {
        "requests": requests,
        "total_us": total * per_request,
        "by_package_us": {
            k: v * per_request for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
        },
        "top": [describe(row) for row in rows[:top]],
        "top_telemetry": [
            describe(row) for row in rows if package_of(row[3][0]) in TELEMETRY_PACKAGES
        ][:top],
    }
