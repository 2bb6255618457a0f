"""The monthly error budget: how many events each level may still send this month.

Pure arithmetic in process; a store shared by every process makes it global. The
request path never waits for the store: ``try_spend`` reads the totals of the last
``sync`` plus this process's unsynced sends, and a worker calls ``sync`` every few
seconds to publish local counts and read everyone else's.

    budget = Budget(monthly=5000, max_unsynced=100)
    allowed, reason = budget.try_spend("error")   # (True, "ok") / (False, "budget_error")
    await budget.sync(store)                      # in the worker, never on a request
    budget.snapshot()  # {"month": "2025-11", "monthly": 5000, "used": 12, ...}

Tiers: ``fatal`` is always allowed; ``error`` until 90% of the month is used;
``warning`` until 60%; ``info`` and ``debug`` until 50%.

Bounded overshoot. Processes only see each other's sends at ``sync``, so all of them
may spend just under a tier's limit at once. With ``max_unsynced = C`` each process
refuses non-fatal sends once it has ``C`` unsynced ones, so a tier is exceeded by at
most ``P x C`` events across ``P`` processes (and by no more than ``P x`` the sends of
one sync interval). The default ``C = max(10, 2% of monthly)`` keeps ``error`` within
the monthly budget for up to five processes (90% + 5 x 2%). Fatal events are never
refused, so they may exceed the budget by design. Without a store there is no sync and
no cap: the budget is exact for the one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, Protocol, TypedDict

__all__ = [
    "LEVELS",
    "TIER_LIMITS",
    "Budget",
    "BudgetSnapshot",
    "BudgetStore",
    "default_max_unsynced",
]

LEVELS: Final = ("fatal", "error", "warning", "info", "debug")
# Share of the monthly budget, already used, from which a level is refused.
TIER_LIMITS: Final[Mapping[str, float | None]] = {
    "fatal": None,
    "error": 0.90,
    "warning": 0.60,
    "info": 0.50,
    "debug": 0.50,
}


class BudgetSnapshot(TypedDict):
    month: str  # "YYYY-MM", UTC
    monthly: int
    used: int  # every process's sends at the last sync, plus this process's since
    remaining: int
    by_level: dict[str, int]
    unsynced: int  # this process's sends not yet published to the store


class BudgetStore(Protocol):
    """Where every process's counts meet (the app implements it on its database)."""

    async def add_and_read(self, month: str, deltas: Mapping[str, int]) -> Mapping[str, int]:
        """Atomically add ``deltas`` (level -> count) to ``month`` ("YYYY-MM") and return
        that month's totals per level, summed over all processes."""
        ...


def default_max_unsynced(monthly: int) -> int:
    """The per-process cap on unsynced non-fatal sends: max(10, 2% of the month)."""
    return max(10, monthly * 2 // 100)


def _month_bounds(ts: float) -> tuple[str, float]:
    """The UTC month ("YYYY-MM") containing ``ts`` and the timestamp at which it ends."""
    now = datetime.fromtimestamp(ts, UTC)
    if now.month == 12:
        end = datetime(now.year + 1, 1, 1, tzinfo=UTC)
    else:
        end = datetime(now.year, now.month + 1, 1, tzinfo=UTC)
    return f"{now.year:04d}-{now.month:02d}", end.timestamp()


def _add(into: dict[str, int], deltas: Mapping[str, int]) -> None:
    for level, n in deltas.items():
        into[level] = into.get(level, 0) + n


class Budget:
    """Monthly send budget with level tiers. Thread-safe; ``try_spend`` never blocks on I/O.

    ``clock`` returns Unix seconds (tests move it across month ends). ``max_unsynced``
    caps non-fatal sends between two syncs (``None``: no cap, for a process without a
    store).
    """

    def __init__(
        self,
        monthly: int,
        *,
        max_unsynced: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if monthly < 0:
            raise ValueError("monthly budget must be >= 0")
        self.monthly = monthly
        self.max_unsynced = max_unsynced
        self._clock = clock
        self._lock = threading.Lock()
        self._month, self._month_end = _month_bounds(clock())
        self._limits = {
            level: (None if share is None else int(share * monthly))
            for level, share in TIER_LIMITS.items()
        }
        self._synced: dict[str, int] = {}  # totals of all processes at the last sync
        self._pending: dict[str, int] = {}  # this process's sends since the last sync
        self._pending_total = 0
        self._pending_nonfatal = 0
        # Sends of a month that ended before they were synced, flushed by the next sync.
        self._stale: list[tuple[str, dict[str, int]]] = []

    @property
    def month(self) -> str:
        return self._month

    def _roll_if_needed(self) -> None:
        now = self._clock()
        if now < self._month_end:
            return
        if self._pending:
            self._stale.append((self._month, self._pending))
        self._month, self._month_end = _month_bounds(now)
        self._synced = {}
        self._pending = {}
        self._pending_total = 0
        self._pending_nonfatal = 0

    def _used(self) -> int:
        return sum(self._synced.values()) + self._pending_total

    def try_spend(self, level: str) -> tuple[bool, str]:
        """Count one send at ``level`` if its tier allows it.

        Returns ``(True, "ok")``, or ``(False, reason)`` with reason ``budget_<level>``
        (the tier is used up) or ``budget_unsynced`` (this process hit its cap of
        unsynced sends; the next sync lifts it).
        """
        with self._lock:
            self._roll_if_needed()
            limit = self._limits.get(level, self._limits["debug"])
            if limit is not None:
                if self._used() >= limit:
                    return False, f"budget_{level}"
                if self.max_unsynced is not None and self._pending_nonfatal >= self.max_unsynced:
                    return False, "budget_unsynced"
                self._pending_nonfatal += 1
            self._pending[level] = self._pending.get(level, 0) + 1
            self._pending_total += 1
            return True, "ok"

    async def sync(self, store: BudgetStore) -> None:
        """Publish this process's unsynced sends and read every process's totals.

        On failure the unsynced counts are kept for the next attempt and the error is
        raised; the cap on unsynced sends keeps protecting the budget meanwhile.
        """
        with self._lock:
            self._roll_if_needed()
            month = self._month
            deltas = self._pending
            stale = self._stale
            self._pending, self._stale = {}, []
            self._pending_total = self._pending_nonfatal = 0
        try:
            for old_month, old_deltas in stale:
                await store.add_and_read(old_month, old_deltas)
                stale = stale[1:]
            totals = await store.add_and_read(month, deltas)
        except BaseException:
            with self._lock:
                self._stale = stale + self._stale
                if month == self._month:
                    _add(self._pending, deltas)
                    self._pending_total += sum(deltas.values())
                    self._pending_nonfatal += sum(
                        n for level, n in deltas.items() if level != "fatal"
                    )
                elif deltas:
                    self._stale.append((month, deltas))
            raise
        with self._lock:
            if month == self._month:
                self._synced = {level: int(n) for level, n in totals.items()}
            # else: the month ended while we awaited; the new month starts from zero.

    def snapshot(self) -> BudgetSnapshot:
        """``{month, monthly, used, remaining, by_level, unsynced}`` for status pages."""
        with self._lock:
            self._roll_if_needed()
            by_level = dict(self._synced)
            _add(by_level, self._pending)
            used = sum(by_level.values())
            return {
                "month": self._month,
                "monthly": self.monthly,
                "used": used,
                "remaining": max(0, self.monthly - used),
                "by_level": {level: by_level.get(level, 0) for level in LEVELS},
                "unsynced": self._pending_total,
            }
