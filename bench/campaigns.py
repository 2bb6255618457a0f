"""Case 4: campaign dispatch cost per item with 1k, 10k and 100k items queued.

For each size, a fresh worker (production telemetry defaults, fresh SQLite copy, the
app's own scheduler and processor loops not started) creates
a campaign through the service (``create_campaign``: one transaction, inline contacts,
timed), starts it, then drives ``CampaignProcessor.tick()`` back to back: each tick
claims up to ``CAMPAIGN_CLAIM_BATCH`` due items and dials them (``initiate_call`` → the
simulator, zero latency → item ``in_progress``); the next tick starts when those dials
are done. The same number of items (the sample) is dispatched at every size, so the
per-item figure shows how the queue's size weighs on the claim.

The simulator's webhooks never fire here, so dialed items stay in flight: the bench
raises the campaign's ``max_concurrency`` in the database (the API caps it at 100) so that
in-flight items never block the sample. Peak RSS is the worker's ``ru_maxrss`` (creation
included); RSS before and after dispatch is read from /proc.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from dataclasses import dataclass, field
from typing import Any

from bench.context import Context
from bench.report import Goal, Section, table, times
from bench.stats import fmt, ratio

GROWTH_GOAL = 1.2


async def run_campaign(worker: Any, command: dict[str, Any]) -> dict[str, Any]:
    """In the worker: create a campaign of ``items`` contacts, dispatch ``sample`` of them."""
    from sqlalchemy import func, select, update

    from app.campaigns.models import Campaign, CampaignItem
    from app.campaigns.processor import CampaignProcessor
    from app.campaigns.schemas import CampaignIn, ContactEntry
    from app.campaigns.service import create_campaign, start_campaign
    from bench.worker import maxrss_kb, rss_kb

    items: int = command["items"]
    sample: int = command["sample"]
    limit_s: float = command.get("limit_s", 120.0)
    app = worker.app
    sessionmaker = app.state.sessionmaker
    seeded = worker.seeded
    body = CampaignIn(
        name=f"bench {items}",
        agent_id=seeded.agent_id,
        contacts=[
            ContactEntry(name=f"Contact {i}", phone_number=f"+9198{i:08d}") for i in range(items)
        ],
        max_concurrency=100,
    )
    rss_start = rss_kb()
    began = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        campaign = await create_campaign(session, user_id=seeded.user_id, body=body)
        campaign_id = campaign.id
    create_s = time.perf_counter() - began
    del body
    async with sessionmaker() as session, session.begin():
        await start_campaign(session, user_id=seeded.user_id, campaign_id=campaign_id)
        await session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(max_concurrency=sample + 1000)
        )
    gc.collect()
    processor = CampaignProcessor(
        sessionmaker=sessionmaker, bolna=app.state.bolna, settings=worker.settings
    )
    rss_before = rss_kb()
    cpu_began = time.process_time()
    began = time.perf_counter()
    dispatched = ticks = 0
    tick_s: list[float] = []
    while dispatched < sample and time.perf_counter() - began < limit_s:
        tick_began = time.perf_counter()
        claimed = await processor.tick()
        tick_s.append(time.perf_counter() - tick_began)
        ticks += 1
        pending = set(getattr(processor, "_tasks", ()))
        if pending:
            await asyncio.wait(pending, timeout=limit_s)
        dispatched += claimed
        if claimed == 0:
            break
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    rss_after = rss_kb()
    await processor.aclose()
    async with sessionmaker() as session:
        states = dict(
            (
                await session.execute(
                    select(CampaignItem.state, func.count())
                    .where(CampaignItem.campaign_id == campaign_id)
                    .group_by(CampaignItem.state)
                )
            ).all()
        )
    return {
        "items": items,
        "create_s": create_s,
        "dispatched": dispatched,
        "ticks": ticks,
        "seconds": elapsed,
        "per_item_ms": elapsed / dispatched * 1000 if dispatched else math.nan,
        "cpu_per_item_ms": cpu / dispatched * 1000 if dispatched else math.nan,
        "claim_tick_ms": sorted(tick_s)[len(tick_s) // 2] * 1000 if tick_s else math.nan,
        "states": {str(k): int(v) for k, v in states.items()},
        "rss_start_kb": rss_start,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "maxrss_kb": maxrss_kb(),
    }


@dataclass
class CampaignsResult:
    runs: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str = ""


def _available() -> str:
    try:
        from app.campaigns.processor import CampaignProcessor  # noqa: F401
        from app.campaigns.service import create_campaign  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


async def run(ctx: Context) -> CampaignsResult:
    result = CampaignsResult(unavailable=_available())
    if result.unavailable:
        return result
    for items in ctx.plan.campaign_sizes:
        # The app's own campaign loops stay off: the bench drives the processor itself.
        worker = await ctx.start_worker(f"campaign-{items}", config="prod", start_workers=False)
        try:
            reply = await worker.call(
                {"cmd": "campaign", "items": items, "sample": ctx.plan.campaign_sample},
                limit_s=900,
            )
            result.runs.append(reply)
        except Exception as exc:
            result.unavailable = f"{type(exc).__name__}: {exc}"
            break
        finally:
            await ctx.procs.stop_worker(worker)
            await ctx.procs.reset_simulator()
    return result


def section(result: CampaignsResult) -> Section:
    title = "## 4. Campaign dispatch growth"
    if result.unavailable and not result.runs:
        line = f"not measured: campaigns not available at the time ({result.unavailable})"
        return (
            f"{title}\n\n{line}\n",
            [Goal("4 campaigns", "per-item(100k)/per-item(1k) ≤ 1.2", "", None, line)],
        )
    rows = [
        [
            f"{run['items']:,}",
            fmt(run["create_s"], 2),
            f"{run['dispatched']:,}",
            fmt(run["per_item_ms"], 2),
            fmt(run["cpu_per_item_ms"], 2),
            fmt(run["claim_tick_ms"], 1),
            fmt(run["rss_before_kb"] / 1024, 0),
            fmt(run["rss_after_kb"] / 1024, 0),
            fmt(run["maxrss_kb"] / 1024, 0),
        ]
        for run in result.runs
    ]
    first, last = result.runs[0], result.runs[-1]
    growth = ratio(last["per_item_ms"], first["per_item_ms"])
    cpu_growth = ratio(last["cpu_per_item_ms"], first["cpu_per_item_ms"])
    goals = [
        Goal(
            "4 campaigns",
            f"dispatch per-item({last['items'] // 1000}k)/per-item({first['items'] // 1000}k) "
            f"≤ {GROWTH_GOAL}",
            f"{times(growth)} wall, {times(cpu_growth)} CPU",
            None if math.isnan(growth) else growth <= GROWTH_GOAL,
            "" if last["items"] >= 100_000 else "quick mode: 100k not run",
        ),
        Goal(
            "4 campaigns",
            "peak RSS of the same runs",
            ", ".join(
                f"{r['items'] // 1000}k: {r['maxrss_kb'] / 1024:.0f} MiB" for r in result.runs
            ),
            None,
            "includes creating the campaign (inline contacts, one transaction)",
        ),
    ]
    note = f"\n\nStopped early: {result.unavailable}" if result.unavailable else ""
    text = "\n".join(
        [
            title,
            "",
            "Fresh worker per size (production telemetry defaults, the app's own campaign "
            "loops off); the campaign is created through the service with inline contacts, "
            "then the processor's `tick()` runs back to back until the sample is dialed "
            "(zero-latency simulator). The claim's queries are index-only on SQLite "
            "(`ix_campaign_items_claim`, `ix_campaign_items_lease`).",
            "",
            table(
                [
                    "queued items",
                    "create s",
                    "dispatched",
                    "ms/item",
                    "CPU ms/item",
                    "claim tick ms (median)",
                    "RSS before MiB",
                    "RSS after MiB",
                    "peak RSS MiB",
                ],
                rows,
            ),
        ]
    )
    return text + note, goals
