"""How the app takes campaigns on: the router at build time, the loops in the lifespan.

# create_app()
install(app)
# lifespan, once the sessionmaker and the Bolna client exist
campaigns = add_workers(workers, sessionmaker=sessionmaker, bolna=bolna, settings=settings)
...
await campaigns.aclose()   # before workers.stop(): let dials in flight finish
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bolna.client import BolnaClient
from app.calls.service import on_call_final
from app.campaigns.processor import PROCESSOR_WORKER, CampaignProcessor, settle_item_on_final
from app.campaigns.router import router
from app.campaigns.scheduler import SCHEDULER_WORKER, scheduler_tick
from app.config import Settings
from app.workers import Workers


def install(app: FastAPI) -> None:
    """Mount `/campaigns` and let final call statuses settle campaign items."""
    app.include_router(router)
    on_call_final(settle_item_on_final)


def add_workers(
    workers: Workers,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    bolna: BolnaClient,
    settings: Settings,
) -> CampaignProcessor:
    """Add the scheduler and queue-processor loops; returns the processor, whose `aclose()`
    the lifespan awaits before stopping the workers."""
    processor = CampaignProcessor(sessionmaker=sessionmaker, bolna=bolna, settings=settings)
    interval = settings.campaign_tick_seconds
    workers.add(
        SCHEDULER_WORKER, interval, lambda: scheduler_tick(sessionmaker), feature="campaign"
    )
    workers.add(PROCESSOR_WORKER, interval, processor.tick, feature="campaign")
    return processor
