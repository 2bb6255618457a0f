"""The error budget's shared store: per-month, per-level counts in `telemetry_budget`.

Handed to `telemetry.configure` so every process on the database shares one budget;
the telemetry package syncs it from a worker, never on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import TelemetryBudget


class DatabaseBudgetStore:
    def __init__(self) -> None:
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None

    def bind(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def add_and_read(self, month: str, deltas: Mapping[str, int]) -> Mapping[str, int]:
        if self._sessionmaker is None:
            return dict(deltas)
        async with self._sessionmaker() as session, session.begin():
            for level, delta in deltas.items():
                if delta:
                    await _increment(session, month, level, delta)
            rows = await session.execute(
                select(TelemetryBudget.level, TelemetryBudget.count).where(
                    TelemetryBudget.month == month
                )
            )
            return {level: int(count) for level, count in rows}


async def _increment(session: AsyncSession, month: str, level: str, delta: int) -> None:
    result = await session.execute(
        update(TelemetryBudget)
        .where(TelemetryBudget.month == month, TelemetryBudget.level == level)
        .values(count=TelemetryBudget.count + delta)
    )
    if getattr(result, "rowcount", 0):
        return
    try:
        async with session.begin_nested():
            session.add(TelemetryBudget(month=month, level=level, count=delta))
    except IntegrityError:
        # Another process inserted the row first; add to it instead.
        await session.execute(
            update(TelemetryBudget)
            .where(TelemetryBudget.month == month, TelemetryBudget.level == level)
            .values(count=TelemetryBudget.count + delta)
        )
