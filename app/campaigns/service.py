"""Campaigns: creation (one transaction, up to 100,000 contacts), reads and state changes.

    campaign = await create_campaign(session, user_id=1, body=CampaignIn(...))
    await start_campaign(session, user_id=1, campaign_id=campaign.id)

A campaign moves  draft → scheduled → running ⇄ paused → completed,  and to canceled from
any state but completed. Pausing stops new dials; calls in flight finish and their items
settle. Cancelling also cancels the pending items. Every change to a campaign takes its row
lock first (`lock_campaign`) so the processor, the webhook listener and these endpoints never
act on a stale status.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from opentelemetry import trace
from sqlalchemy import Table, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.service import get_agent
from app.calls.service import decode_cursor, encode_cursor
from app.campaigns.models import OPEN_ITEM_STATES, Campaign, CampaignItem
from app.campaigns.schemas import CampaignIn
from app.config import Settings
from app.credits.service import ensure_can_call
from app.db import utcnow
from app.errors import AppError, Conflict, NotFound, ValidationFailed
from app.models import Contact
from app.phone import normalize_e164
from telemetry import attributes as attrs
from telemetry import capture_error

_tracer = trace.get_tracer(__name__)
T = TypeVar("T")

INSERT_CHUNK = 5_000
ID_LOOKUP_CHUNK = 500
MAX_REPORTED_PROBLEMS = 10
PHONE_RULE = "must be in E.164 form, a + and 7 to 15 digits, e.g. +919876543210"


def chunked(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True)
class Target:
    """One contact to call, as it will be stored on the queue item."""

    name: str
    phone_number: str
    contact_id: int | None = None


def _problems_sentence(problems: list[str], total: int) -> str:
    shown = "; ".join(problems[:MAX_REPORTED_PROBLEMS])
    more = total - min(total, MAX_REPORTED_PROBLEMS)
    noun = "contact is" if total == 1 else "contacts are"
    suffix = f"; and {more} more" if more else ""
    return f"{total} {noun} invalid: {shown}{suffix}. Nothing was created."


def validate_inline_contacts(body: CampaignIn) -> list[Target]:
    """The inline contacts normalised, or ValidationFailed naming each bad one by index."""
    targets: list[Target] = []
    problems: list[str] = []
    bad = 0
    for index, entry in enumerate(body.contacts):
        name = entry.name.strip()
        phone = normalize_e164(entry.phone_number)
        if len(name) > 200:
            bad += 1
            problems.append(f"contacts[{index}].name: must be at most 200 characters")
        elif phone is None:
            bad += 1
            problems.append(f"contacts[{index}].phone_number: {PHONE_RULE}")
        else:
            targets.append(Target(name=name, phone_number=phone))
    if bad:
        raise ValidationFailed(_problems_sentence(problems, bad))
    return targets


async def resolve_contact_ids(
    session: AsyncSession, *, user_id: int, contact_ids: Sequence[int]
) -> list[Target]:
    """The user's contacts, in the order given; NotFound naming the unknown ones."""
    wanted = list(dict.fromkeys(contact_ids))
    found: dict[int, Target] = {}
    for chunk in chunked(wanted, ID_LOOKUP_CHUNK):
        rows = await session.execute(
            select(Contact.id, Contact.name, Contact.phone_number).where(
                Contact.user_id == user_id, Contact.id.in_(chunk)
            )
        )
        for contact_id, name, phone in rows:
            found[contact_id] = Target(name=name, phone_number=phone, contact_id=contact_id)
    missing = [i for i, contact_id in enumerate(contact_ids) if contact_id not in found]
    if missing:
        named = ", ".join(
            f"contact_ids[{i}] ({contact_ids[i]})" for i in missing[:MAX_REPORTED_PROBLEMS]
        )
        more = f" and {len(missing) - MAX_REPORTED_PROBLEMS} more" if len(missing) > 10 else ""
        raise NotFound(f"Contacts not found: {named}{more}. Nothing was created.")
    return [found[contact_id] for contact_id in contact_ids]


def dedupe_by_phone(targets: list[Target]) -> tuple[list[Target], int]:
    """Keep the first entry per phone number: a campaign calls each number once."""
    seen: set[str] = set()
    kept: list[Target] = []
    for target in targets:
        if target.phone_number not in seen:
            seen.add(target.phone_number)
            kept.append(target)
    return kept, len(targets) - len(kept)


async def create_campaign(session: AsyncSession, *, user_id: int, body: CampaignIn) -> Campaign:
    """Validate everything, then write the campaign and all its queue items (flushed, not
    committed: the request's unit of work commits, so a failure leaves nothing behind)."""
    with _tracer.start_as_current_span("campaign.create") as span:
        span.set_attribute(attrs.FEATURE, "campaign")
        span.set_attribute(attrs.AGENT_ID, body.agent_id)
        try:
            campaign = await _create(session, user_id=user_id, body=body)
        except AppError as exc:
            if not exc.expected:
                capture_error(exc, feature="campaign", agent_id=body.agent_id)
            raise
        except Exception as exc:
            capture_error(exc, feature="campaign", agent_id=body.agent_id)
            raise
        span.set_attribute(attrs.CAMPAIGN_ID, campaign.id)
        return campaign


async def _create(session: AsyncSession, *, user_id: int, body: CampaignIn) -> Campaign:
    if not body.contact_ids and not body.contacts:
        raise ValidationFailed(
            "contacts: give at least one contact, in contact_ids or in contacts."
        )
    agent = await get_agent(session, user_id=user_id, agent_id=body.agent_id)
    inline = validate_inline_contacts(body)
    stored = await resolve_contact_ids(session, user_id=user_id, contact_ids=body.contact_ids)
    targets, duplicates = dedupe_by_phone(stored + inline)

    window = body.schedule.daily_window
    campaign = Campaign(
        user_id=user_id,
        agent_id=agent.id,
        name=body.name.strip() or body.name,
        status="draft",
        max_concurrency=body.max_concurrency,
        start_at=body.schedule.start_at,
        window_start=window.start if window else None,
        window_end=window.end if window else None,
        window_timezone=window.timezone if window else None,
        retry_max_attempts=body.retry.max_attempts,
        retry_on=",".join(dict.fromkeys(body.retry.on)),
        retry_backoff_seconds=body.retry.backoff_seconds,
        total_items=len(targets),
        duplicates_skipped=duplicates,
    )
    session.add(campaign)
    await session.flush()

    now = utcnow()
    items_table: Table = CampaignItem.metadata.tables[CampaignItem.__tablename__]
    for chunk in chunked(targets, INSERT_CHUNK):
        rows: list[dict[str, Any]] = [
            {
                "campaign_id": campaign.id,
                "contact_id": target.contact_id,
                "name": target.name,
                "phone_number": target.phone_number,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "updated_at": now,
            }
            for target in chunk
        ]
        # Core executemany: no ORM objects for what may be 100,000 rows.
        await session.execute(insert(items_table), rows)
    return campaign


async def get_campaign(session: AsyncSession, *, user_id: int, campaign_id: int) -> Campaign:
    campaign = await session.scalar(
        select(Campaign).where(Campaign.id == campaign_id, Campaign.user_id == user_id)
    )
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} was not found.")
    return campaign


async def list_campaigns(
    session: AsyncSession, *, user_id: int, limit: int = 50, cursor: str | None = None
) -> tuple[list[Campaign], str | None]:
    """Newest first; the returned cursor fetches the next page, None at the end."""
    query = select(Campaign).where(Campaign.user_id == user_id)
    if cursor:
        query = query.where(Campaign.id < decode_cursor(cursor))
    rows = list(await session.scalars(query.order_by(Campaign.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def list_items(
    session: AsyncSession,
    *,
    user_id: int,
    campaign_id: int,
    state: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[CampaignItem], str | None]:
    """A campaign's items in upload order; the cursor continues after the last one."""
    await get_campaign(session, user_id=user_id, campaign_id=campaign_id)
    query = select(CampaignItem).where(CampaignItem.campaign_id == campaign_id)
    if state:
        query = query.where(CampaignItem.state == state)
    if cursor:
        query = query.where(CampaignItem.id > decode_cursor(cursor))
    rows = list(await session.scalars(query.order_by(CampaignItem.id).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def progress_of(session: AsyncSession, campaign_id: int) -> dict[str, int]:
    """Items per state: one GROUP BY over the campaign's rows of the claim index."""
    rows = await session.execute(
        select(CampaignItem.state, func.count())
        .where(CampaignItem.campaign_id == campaign_id)
        .group_by(CampaignItem.state)
    )
    return {state: int(count) for state, count in rows}


async def lock_campaign(
    session: AsyncSession, campaign_id: int, *, skip_locked: bool = False
) -> Campaign | None:
    """The campaign, locked until the transaction ends (None if missing or, with
    `skip_locked`, locked by another transaction on PostgreSQL)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: a no-op write takes the database write lock now, so the
        # status read next cannot change before this transaction commits.
        await session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(id=Campaign.id)
        )
        campaign: Campaign | None = await session.get(Campaign, campaign_id, populate_existing=True)
        return campaign
    locked: Campaign | None = await session.scalar(
        select(Campaign).where(Campaign.id == campaign_id).with_for_update(skip_locked=skip_locked),
        execution_options={"populate_existing": True},
    )
    return locked


async def _lock_owned(session: AsyncSession, *, user_id: int, campaign_id: int) -> Campaign:
    campaign = await lock_campaign(session, campaign_id)
    if campaign is None or campaign.user_id != user_id:
        raise NotFound(f"Campaign {campaign_id} was not found.")
    return campaign


async def has_open_items(session: AsyncSession, campaign_id: int) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(
                    CampaignItem.campaign_id == campaign_id,
                    CampaignItem.state.in_(OPEN_ITEM_STATES),
                )
            )
        )
    )


async def complete_if_done(session: AsyncSession, campaign: Campaign) -> bool:
    """Complete a running or paused campaign with no open item (the campaign is locked)."""
    if campaign.status not in ("running", "paused"):
        return False
    if await has_open_items(session, campaign.id):
        return False
    campaign.status = "completed"
    campaign.pause_reason = None
    campaign.finished_at = utcnow()
    return True


def _run_or_schedule(campaign: Campaign, now: datetime) -> None:
    if campaign.start_at is not None and campaign.start_at > now:
        campaign.status = "scheduled"
    else:
        campaign.status = "running"
        campaign.started_at = campaign.started_at or now
    campaign.pause_reason = None


async def start_campaign(session: AsyncSession, *, user_id: int, campaign_id: int) -> Campaign:
    """draft → running, or scheduled when its start_at is still ahead."""
    campaign = await _lock_owned(session, user_id=user_id, campaign_id=campaign_id)
    if campaign.status in ("scheduled", "running"):
        return campaign
    if campaign.status != "draft":
        raise Conflict(
            f"Campaign {campaign_id} is {campaign.status}; only a draft campaign can be "
            "started (a paused one is resumed)."
        )
    _run_or_schedule(campaign, utcnow())
    return campaign


async def pause_campaign(session: AsyncSession, *, user_id: int, campaign_id: int) -> Campaign:
    """Stop dialing; calls in flight finish and their items settle."""
    campaign = await _lock_owned(session, user_id=user_id, campaign_id=campaign_id)
    if campaign.status == "paused":
        return campaign
    if campaign.status not in ("scheduled", "running"):
        raise Conflict(f"Campaign {campaign_id} is {campaign.status}; it cannot be paused.")
    campaign.status = "paused"
    campaign.pause_reason = "user_requested"
    return campaign


async def resume_campaign(
    session: AsyncSession, *, user_id: int, campaign_id: int, settings: Settings
) -> Campaign:
    """paused → running (or scheduled); refused with 402 while the balance is too low."""
    campaign = await _lock_owned(session, user_id=user_id, campaign_id=campaign_id)
    if campaign.status in ("scheduled", "running"):
        return campaign
    if campaign.status != "paused":
        raise Conflict(
            f"Campaign {campaign_id} is {campaign.status}; only a paused campaign can be resumed."
        )
    await ensure_can_call(session, user_id, settings)
    _run_or_schedule(campaign, utcnow())
    return campaign


async def cancel_campaign(session: AsyncSession, *, user_id: int, campaign_id: int) -> Campaign:
    """Cancel the pending items now; items in flight settle when their call ends."""
    campaign = await _lock_owned(session, user_id=user_id, campaign_id=campaign_id)
    if campaign.status == "canceled":
        return campaign
    if campaign.status == "completed":
        raise Conflict(f"Campaign {campaign_id} is completed; it cannot be canceled.")
    now = utcnow()
    campaign.status = "canceled"
    campaign.pause_reason = None
    campaign.finished_at = now
    await session.execute(
        update(CampaignItem)
        .where(CampaignItem.campaign_id == campaign_id, CampaignItem.state == "pending")
        .values(state="canceled", failure_reason="campaign canceled", updated_at=now)
    )
    return campaign
