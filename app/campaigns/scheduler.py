"""When campaigns may dial: daily windows (pure) and the scheduler tick.

    window = DailyWindow.parse("09:00", "18:00", "Asia/Kolkata")
    window_is_open(window, utcnow())        # dial now?
    next_window_opening(window, utcnow())   # if not, when (naive UTC)

A window whose end is before its start crosses midnight ("22:00" to "06:00"); equal start and
end mean all day. Outside its window a campaign stays `running` but claims nothing: its
items wait as `pending` and calls already in flight finish normally.

`scheduler_tick` starts scheduled campaigns whose `start_at` has come and completes the
running or paused ones with no open item left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opentelemetry import trace
from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.campaigns.models import OPEN_ITEM_STATES, Campaign, CampaignItem
from app.db import utcnow
from telemetry import attributes as attrs

SCHEDULER_WORKER = "campaign_scheduler"
log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


def parse_hhmm(value: str) -> time:
    """A 24-hour "HH:MM" ("9:30" too) as a time; ValueError otherwise."""
    hours, sep, minutes = value.strip().partition(":")
    if not (sep and len(hours) in (1, 2) and len(minutes) == 2 and (hours + minutes).isdigit()):
        raise ValueError(f"{value!r} is not a time of day in HH:MM form, e.g. 09:30")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{value!r} is not a time of day between 00:00 and 23:59")
    return time(int(hours), int(minutes))


def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; ValueError for anything else."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"{name!r} is not a known IANA time zone; use a name like Asia/Kolkata"
        ) from exc


@dataclass(frozen=True)
class DailyWindow:
    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, start: str, end: str, timezone: str) -> DailyWindow:
        return cls(parse_hhmm(start), parse_hhmm(end), load_timezone(timezone))

    @property
    def timezone(self) -> str:
        return self.zone.key


def _local(now: datetime, zone: ZoneInfo) -> datetime:
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(zone)


def window_is_open(window: DailyWindow | None, now: datetime) -> bool:
    """Whether `now` (naive UTC or aware) falls inside the window; no window is always open."""
    if window is None or window.start == window.end:
        return True
    local = _local(now, window.zone).time().replace(tzinfo=None)
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end


def next_window_opening(window: DailyWindow | None, now: datetime) -> datetime | None:
    """When the window next opens, as naive UTC; None when it is open now (or there is none)."""
    if window is None or window_is_open(window, now):
        return None
    local = _local(now, window.zone)
    day = local.date()
    if local.time().replace(tzinfo=None) >= window.start:
        day += timedelta(days=1)
    opening = datetime.combine(day, window.start, tzinfo=window.zone)
    return opening.astimezone(UTC).replace(tzinfo=None)


def campaign_window(campaign: Campaign) -> DailyWindow | None:
    if not (campaign.window_start and campaign.window_end and campaign.window_timezone):
        return None
    return DailyWindow.parse(campaign.window_start, campaign.window_end, campaign.window_timezone)


@dataclass(frozen=True)
class SchedulerTick:
    started: int
    completed: int


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def scheduler_tick(sessionmaker: async_sessionmaker[AsyncSession]) -> SchedulerTick:
    """Start campaigns whose time has come; complete those with nothing left to do."""
    with _tracer.start_as_current_span("campaign.scheduler_tick") as span:
        span.set_attribute(attrs.FEATURE, "campaign")
        now = utcnow()
        due = Campaign.status == "scheduled", Campaign.start_at <= now
        open_items = exists(
            select(CampaignItem.id).where(
                CampaignItem.campaign_id == Campaign.id,
                CampaignItem.state.in_(OPEN_ITEM_STATES),
            )
        )
        done = Campaign.status.in_(("running", "paused")), ~open_items
        started = completed = 0
        async with sessionmaker() as session, session.begin():
            # Look before writing: most ticks change nothing, and an UPDATE takes SQLite's
            # one write lock even when it matches no row.
            to_start = list(await session.scalars(select(Campaign.id).where(*due)))
            to_complete = list(await session.scalars(select(Campaign.id).where(*done)))
            if to_start:
                started = _rowcount(
                    await session.execute(
                        update(Campaign)
                        .where(Campaign.id.in_(to_start), *due)
                        .values(
                            status="running", started_at=func.coalesce(Campaign.started_at, now)
                        )
                    )
                )
            if to_complete:
                # The open-item test is repeated in the UPDATE itself: an item never passes
                # through a closed state on its way back to pending, so it cannot be stale.
                completed = _rowcount(
                    await session.execute(
                        update(Campaign)
                        .where(Campaign.id.in_(to_complete), *done)
                        .values(status="completed", pause_reason=None, finished_at=now)
                    )
                )
        tick = SchedulerTick(started=started, completed=completed)
        if tick.started or tick.completed:
            log.info("campaigns started: %d, completed: %d", tick.started, tick.completed)
        return tick
