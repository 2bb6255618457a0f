"""The monthly error budget: tiers, sharing between processes, month rollover."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from telemetry.budget import Budget, default_max_unsynced

NOV_15 = datetime(2025, 11, 15, 12, tzinfo=UTC).timestamp()
DEC_1 = datetime(2025, 12, 1, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOV_15) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    """The app's database store, in memory: one row per (month, level)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, int]] = {}
        self.calls = 0
        self.fail_next = False

    async def add_and_read(self, month: str, deltas: Mapping[str, int]) -> Mapping[str, int]:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database unavailable")
        month_rows = self.rows.setdefault(month, {})
        for level, n in deltas.items():
            month_rows[level] = month_rows.get(level, 0) + n
        return dict(month_rows)


def storm(budget: Budget, attempts: int) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Mostly errors and warnings, some info, 1 in 200 fatal: (tried, sent, refusal reasons)."""
    levels = itertools.cycle(["error"] * 120 + ["warning"] * 60 + ["info"] * 19 + ["fatal"])
    tried: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for level in itertools.islice(levels, attempts):
        tried[level] += 1
        allowed, reason = budget.try_spend(level)
        if allowed:
            sent[level] += 1
        else:
            refused[reason] += 1
    return tried, sent, refused


def test_a_storm_of_ten_times_the_budget_stays_within_it_and_every_fatal_passes() -> None:
    budget = Budget(5000, clock=Clock())
    tried, sent, refused = storm(budget, 50_000)

    assert sent["fatal"] == tried["fatal"] == 250
    assert sum(sent.values()) <= 5000
    # Non-fatal sends stop once 90% is used, fatal ones included in the count.
    nonfatal = sum(n for level, n in sent.items() if level != "fatal")
    assert 4500 - sent["fatal"] <= nonfatal <= 4500
    assert budget.try_spend("error") == (False, "budget_error")
    assert refused.keys() == {"budget_error", "budget_warning", "budget_info"}
    snapshot = budget.snapshot()
    assert snapshot["used"] == sum(sent.values())
    assert snapshot["remaining"] == 5000 - sum(sent.values())


def test_tiers_refuse_lower_levels_first() -> None:
    budget = Budget(100, clock=Clock())
    for _ in range(50):
        assert budget.try_spend("warning") == (True, "ok")
    assert budget.try_spend("info") == (False, "budget_info")  # 50% used
    assert budget.try_spend("debug") == (False, "budget_debug")
    for _ in range(10):
        assert budget.try_spend("warning") == (True, "ok")
    assert budget.try_spend("warning") == (False, "budget_warning")  # 60% used
    for _ in range(30):
        assert budget.try_spend("error") == (True, "ok")
    assert budget.try_spend("error") == (False, "budget_error")  # 90% used
    assert budget.try_spend("fatal") == (True, "ok")
    assert budget.snapshot()["by_level"] == {
        "fatal": 1,
        "error": 30,
        "warning": 60,
        "info": 0,
        "debug": 0,
    }


def test_a_zero_budget_sends_only_fatal() -> None:
    budget = Budget(0, clock=Clock())
    assert budget.try_spend("error") == (False, "budget_error")
    assert budget.try_spend("fatal") == (True, "ok")


async def test_two_processes_share_one_budget_through_the_store() -> None:
    store = MemoryStore()
    monthly = 5000
    cap = default_max_unsynced(monthly)
    first = Budget(monthly, max_unsynced=cap, clock=Clock())
    second = Budget(monthly, max_unsynced=cap, clock=Clock())

    fatal_tried = 0
    for _ in range(40):  # a storm in both processes, syncing every "few seconds"
        for budget in (first, second):
            tried, sent, _ = storm(budget, 500)
            assert sent["fatal"] == tried["fatal"]
            fatal_tried += tried["fatal"]
        await first.sync(store)
        await second.sync(store)

    totals = store.rows["2025-11"]
    nonfatal = sum(n for level, n in totals.items() if level != "fatal")
    # Each process may overshoot a tier by at most its unsynced cap.
    assert 4500 <= nonfatal <= 4500 + 2 * cap
    assert totals["fatal"] == fatal_tried
    await first.sync(store)
    assert first.snapshot()["used"] == second.snapshot()["used"] == sum(totals.values())


async def test_between_syncs_a_process_stops_at_its_unsynced_cap() -> None:
    store = MemoryStore()
    budget = Budget(5000, max_unsynced=10, clock=Clock())
    results = [budget.try_spend("error") for _ in range(12)]
    assert results[:10] == [(True, "ok")] * 10
    assert results[10:] == [(False, "budget_unsynced")] * 2
    assert budget.try_spend("fatal") == (True, "ok")  # fatal ignores the cap

    await budget.sync(store)
    assert store.rows["2025-11"] == {"error": 10, "fatal": 1}
    assert budget.try_spend("error") == (True, "ok")
    assert budget.snapshot()["unsynced"] == 1


async def test_a_failed_sync_keeps_the_counts_for_the_next_one() -> None:
    store = MemoryStore()
    budget = Budget(5000, max_unsynced=100, clock=Clock())
    for _ in range(5):
        budget.try_spend("error")
    store.fail_next = True
    with pytest.raises(ConnectionError):
        await budget.sync(store)
    assert budget.snapshot()["unsynced"] == 5
    budget.try_spend("warning")
    await budget.sync(store)
    assert store.rows["2025-11"] == {"error": 5, "warning": 1}
    assert budget.snapshot()["unsynced"] == 0
    assert budget.snapshot()["used"] == 6


async def test_the_budget_starts_afresh_when_the_utc_month_changes() -> None:
    clock = Clock()
    store = MemoryStore()
    budget = Budget(10, max_unsynced=100, clock=clock)
    for _ in range(9):
        budget.try_spend("error")
    assert budget.try_spend("error") == (False, "budget_error")
    assert budget.snapshot()["month"] == "2025-11"

    clock.now = DEC_1 - 0.001
    assert budget.try_spend("error") == (False, "budget_error")
    clock.now = DEC_1
    assert budget.try_spend("error") == (True, "ok")
    snapshot = budget.snapshot()
    assert snapshot["month"] == "2025-12"
    assert snapshot["used"] == 1

    await budget.sync(store)  # November's unsynced sends still land in November
    assert store.rows == {"2025-11": {"error": 9}, "2025-12": {"error": 1}}


async def test_sync_reads_other_processes_totals() -> None:
    store = MemoryStore()
    store.rows["2025-11"] = {"error": 4490}
    budget = Budget(5000, max_unsynced=100, clock=Clock())
    assert budget.try_spend("warning") == (True, "ok")  # does not know yet
    await budget.sync(store)
    assert budget.try_spend("warning") == (False, "budget_warning")
    assert [budget.try_spend("error")[0] for _ in range(12)].count(True) == 9
    assert budget.snapshot()["by_level"]["error"] == 4499
