"""Background workers: small periodic loops owned by the app's lifespan.

Each loop runs its step, sleeps its interval, and survives its own failures (reported
through the error policy). `status()` feeds `GET /health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.db import is_database_unavailable
from telemetry import capture_error

log = logging.getLogger(__name__)
Step = Callable[[], Awaitable[Any]]


@dataclass
class _Loop:
    name: str
    interval: float
    step: Step
    feature: str
    task: asyncio.Task[None] | None = None
    runs: int = 0
    failures: int = 0
    last_run_at: str | None = None
    last_error: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Workers:
    def __init__(self) -> None:
        self._loops: dict[str, _Loop] = {}

    def add(self, name: str, interval: float, step: Step, *, feature: str) -> None:
        self._loops[name] = _Loop(name, interval, step, feature)

    def start(self) -> None:
        for loop in self._loops.values():
            if loop.task is None:
                loop.task = asyncio.create_task(self._run(loop), name=f"worker:{loop.name}")

    def poke(self, name: str) -> None:
        """Run a loop's next step now instead of after its interval."""
        loop = self._loops.get(name)
        if loop is not None:
            loop.wake.set()

    async def stop(self) -> None:
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for loop in self._loops.values():
            loop.task = None

    async def _run(self, loop: _Loop) -> None:
        while True:
            try:
                await loop.step()
                loop.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                loop.failures += 1
                loop.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("worker %s failed; it keeps running", loop.name)
                # A database outage is one failure, however many loops run into it.
                feature = "database" if is_database_unavailable(exc) else loop.feature
                capture_error(exc, feature=feature, worker=loop.name)
            loop.runs += 1
            loop.last_run_at = datetime.now(UTC).isoformat()
            loop.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop.wake.wait(), timeout=loop.interval)

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            loop.name: {
                "running": loop.task is not None and not loop.task.done(),
                "runs": loop.runs,
                "failures": loop.failures,
                "last_run_at": loop.last_run_at,
                "last_error": loop.last_error,
            }
            for loop in self._loops.values()
        }
