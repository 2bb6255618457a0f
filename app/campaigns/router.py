from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import CurrentUser, SettingsDep
from app.campaigns import service
from app.campaigns.models import Campaign
from app.campaigns.processor import PROCESSOR_WORKER
from app.campaigns.scheduler import (
    SCHEDULER_WORKER,
    campaign_window,
    next_window_opening,
    window_is_open,
)
from app.campaigns.schemas import (
    CampaignIn,
    CampaignItemOut,
    CampaignItemPage,
    CampaignOut,
    CampaignPage,
    CampaignSummary,
    DailyWindowOut,
    Progress,
    RetryOut,
    ScheduleOut,
)
from app.db import SessionDep, utcnow
from app.models import ApiId
from app.workers import Workers

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
ItemState = Literal["pending", "dialing", "in_progress", "completed", "failed", "canceled"]


def _summary_fields(campaign: Campaign) -> dict[str, object]:
    window = (
        DailyWindowOut(
            start=campaign.window_start,
            end=campaign.window_end,
            timezone=campaign.window_timezone,
        )
        if campaign.window_start and campaign.window_end and campaign.window_timezone
        else None
    )
    return {
        "id": campaign.id,
        "name": campaign.name,
        "agent_id": campaign.agent_id,
        "status": campaign.status,
        "pause_reason": campaign.pause_reason,
        "max_concurrency": campaign.max_concurrency,
        "total_items": campaign.total_items,
        "duplicates_skipped": campaign.duplicates_skipped,
        "schedule": ScheduleOut(start_at=campaign.start_at, daily_window=window),
        "retry": RetryOut(
            max_attempts=campaign.retry_max_attempts,
            on=[outcome for outcome in campaign.retry_on.split(",") if outcome],
            backoff_seconds=campaign.retry_backoff_seconds,
        ),
        "created_at": campaign.created_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
    }


def _summary(campaign: Campaign) -> CampaignSummary:
    return CampaignSummary.model_validate(_summary_fields(campaign))


async def _detail(
    session: AsyncSession, campaign: Campaign, counts: dict[str, int] | None = None
) -> CampaignOut:
    if counts is None:
        counts = await service.progress_of(session, campaign.id)
    window = campaign_window(campaign)
    now = utcnow()
    return CampaignOut.model_validate(
        {
            **_summary_fields(campaign),
            "progress": Progress(**counts),
            "window_open": window_is_open(window, now),
            "next_window_at": next_window_opening(window, now),
        }
    )


def _wake(request: Request) -> None:
    """Let the loops act now rather than at their next tick (after this request commits,
    they may still run a step early; the following one sees the change)."""
    workers: Workers | None = getattr(request.app.state, "workers", None)
    if workers is not None:
        workers.poke(SCHEDULER_WORKER)
        workers.poke(PROCESSOR_WORKER)


@router.post("", status_code=201)
async def create(body: CampaignIn, user: CurrentUser, session: SessionDep) -> CampaignOut:
    """Create a draft campaign: an agent, up to 100,000 contacts (`contact_ids` of your
    contacts and/or inline `contacts`), concurrency, schedule and retry policy.

    Every contact is validated first; a bad one is named by its index and nothing is
    created. A phone number listed twice is called once (`duplicates_skipped`).
    Start it with `POST /campaigns/{id}/start`."""
    campaign = await service.create_campaign(session, user_id=user.user_id, body=body)
    return await _detail(session, campaign, {"pending": campaign.total_items})


@router.get("")
async def index(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> CampaignPage:
    """Your campaigns, newest first; pass `next_cursor` back as `cursor` for the next page."""
    campaigns, next_cursor = await service.list_campaigns(
        session, user_id=user.user_id, limit=limit, cursor=cursor
    )
    return CampaignPage(items=[_summary(c) for c in campaigns], next_cursor=next_cursor)


@router.get("/{campaign_id}")
async def show(campaign_id: ApiId, user: CurrentUser, session: SessionDep) -> CampaignOut:
    """A campaign's status and progress: items pending, dialing, in progress, completed,
    failed and canceled; whether its daily window is open now."""
    campaign = await service.get_campaign(session, user_id=user.user_id, campaign_id=campaign_id)
    return await _detail(session, campaign)


@router.get("/{campaign_id}/items")
async def items(
    campaign_id: ApiId,
    user: CurrentUser,
    session: SessionDep,
    state: ItemState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> CampaignItemPage:
    """A campaign's contacts in upload order, with their state, attempts, call and, for
    failed ones, the reason."""
    rows, next_cursor = await service.list_items(
        session,
        user_id=user.user_id,
        campaign_id=campaign_id,
        state=state,
        limit=limit,
        cursor=cursor,
    )
    return CampaignItemPage(
        items=[CampaignItemOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.post("/{campaign_id}/start")
async def start(
    campaign_id: ApiId, request: Request, user: CurrentUser, session: SessionDep
) -> CampaignOut:
    """Start a draft campaign now, or at its `schedule.start_at` if that is still ahead."""
    campaign = await service.start_campaign(session, user_id=user.user_id, campaign_id=campaign_id)
    await session.commit()  # visible before the loops are woken
    _wake(request)
    return await _detail(session, campaign)


@router.post("/{campaign_id}/pause")
async def pause(campaign_id: ApiId, user: CurrentUser, session: SessionDep) -> CampaignOut:
    """Stop placing new calls; calls in flight finish and their contacts settle."""
    campaign = await service.pause_campaign(session, user_id=user.user_id, campaign_id=campaign_id)
    return await _detail(session, campaign)


@router.post("/{campaign_id}/resume")
async def resume(
    campaign_id: ApiId,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Resume a paused campaign (402 while your balance cannot cover a call)."""
    campaign = await service.resume_campaign(
        session, user_id=user.user_id, campaign_id=campaign_id, settings=settings
    )
    await session.commit()  # visible before the loops are woken
    _wake(request)
    return await _detail(session, campaign)


@router.post("/{campaign_id}/cancel")
async def cancel(campaign_id: ApiId, user: CurrentUser, session: SessionDep) -> CampaignOut:
    """Cancel the campaign: pending contacts are canceled now, calls in flight finish."""
    campaign = await service.cancel_campaign(session, user_id=user.user_id, campaign_id=campaign_id)
    return await _detail(session, campaign)
