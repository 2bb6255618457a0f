"""The queue processor: claims campaign items and dials them; the webhook listener settles them.

    processor = CampaignProcessor(sessionmaker=..., bolna=..., settings=...)
    await processor.tick()      # a worker loop calls this every CAMPAIGN_TICK_SECONDS
    await processor.aclose()    # on shutdown: stop claiming, let started dials finish

Each tick, per running campaign inside its daily window: lock the campaign row (skipped when
another processor holds it), count its calls in flight (`dialing` + `in_progress`), claim at
most `max_concurrency` minus that many due `pending` items (`FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite runs one processor), and mark them `dialing` under this processor's lease.
Each claimed item is dialed in its own task and session through `initiate_call`, so a slow or
failing Bolna request never holds up the other items or the next claims.

An item leaves `in_progress` when its call's final webhook arrives (`settle_item_on_final`,
run inside the webhook's transaction): completed, retried later per the campaign's policy, or
failed with a reason. An item whose lease expired (its process died) is reclaimed: adopted
when its call reached Bolna, released or retried otherwise.

The decisions themselves (`settle_after_call`, `settle_after_dial_error`) are pure functions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bolna.client import BolnaClient
from app.bolna.errors import BolnaError, BolnaUnauthorized
from app.calls.service import CallRequest, initiate_call
from app.campaigns.models import IN_FLIGHT_STATES, Campaign, CampaignItem
from app.campaigns.scheduler import campaign_window, window_is_open
from app.campaigns.service import complete_if_done, lock_campaign
from app.config import Settings
from app.credits.service import balance_of
from app.db import is_database_unavailable, utcnow
from app.errors import AppError, InsufficientCredits
from app.models import Call
from app.webhooks.state import FINAL
from telemetry import attributes as attrs
from telemetry import capture_error

PROCESSOR_WORKER = "campaign_processor"
RECLAIM_BATCH = 100
log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


# --- decisions (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    on: frozenset[str]
    backoff_seconds: float

    @classmethod
    def of(cls, campaign: Campaign) -> RetryPolicy:
        outcomes = frozenset(o for o in campaign.retry_on.split(",") if o)
        return cls(campaign.retry_max_attempts, outcomes, float(campaign.retry_backoff_seconds))


@dataclass(frozen=True)
class Settlement:
    """Where an item goes after an attempt: `pending` (retry after a delay) or a final state."""

    state: str  # pending | completed | failed | canceled
    retry_after_seconds: float = 0.0
    reason: str | None = None


def _retry_or_stop(
    what: str, *, attempts: int, policy: RetryPolicy, campaign_status: str
) -> Settlement:
    if attempts >= policy.max_attempts:
        plural = "attempt" if attempts == 1 else "attempts"
        return Settlement("failed", reason=f"{what} after {attempts} {plural}")
    if campaign_status == "canceled":
        return Settlement("canceled", reason=f"{what}; campaign canceled before a retry")
    return Settlement("pending", retry_after_seconds=policy.backoff_seconds)


def settle_after_call(
    outcome: str, *, attempts: int, policy: RetryPolicy, campaign_status: str
) -> Settlement:
    """After a call's final status (`completed`, `busy`, `no-answer`, `failed`, ...)."""
    if outcome == "completed":
        return Settlement("completed")
    if outcome not in policy.on:
        return Settlement("failed", reason=f"call ended {outcome} (not retried)")
    return _retry_or_stop(
        outcome, attempts=attempts, policy=policy, campaign_status=campaign_status
    )


def settle_after_dial_error(
    reason: str, *, retryable: bool, attempts: int, policy: RetryPolicy, campaign_status: str
) -> Settlement:
    """After a dial that never became a call (Bolna refused or failed to answer)."""
    if not retryable:
        return Settlement("failed", reason=reason)
    return _retry_or_stop(reason, attempts=attempts, policy=policy, campaign_status=campaign_status)


def apply_settlement(
    item: CampaignItem, settlement: Settlement, *, now: datetime, outcome: str | None
) -> None:
    item.state = settlement.state
    item.last_outcome = outcome
    item.lease_owner = None
    item.lease_expires_at = None
    item.failure_reason = settlement.reason if settlement.state != "pending" else None
    if settlement.state == "pending":
        item.next_attempt_at = now + timedelta(seconds=settlement.retry_after_seconds)


# --- the webhook side ---------------------------------------------------------------------


async def settle_item_on_final(session: AsyncSession, call: Call) -> None:
    """`on_call_final` listener: move the call's queue item on (inside the webhook's txn)."""
    if call.campaign_id is None or call.campaign_item_id is None:
        return
    campaign = await lock_campaign(session, call.campaign_id)
    if campaign is None:
        return
    item = await session.get(
        CampaignItem, call.campaign_item_id, with_for_update=True, populate_existing=True
    )
    if item is None or item.state not in IN_FLIGHT_STATES:
        return
    if item.call_id is not None and item.call_id != call.id:
        return  # a late final status of an earlier attempt's call
    item.call_id = call.id
    settlement = settle_after_call(
        call.status,
        attempts=item.attempts,
        policy=RetryPolicy.of(campaign),
        campaign_status=campaign.status,
    )
    apply_settlement(item, settlement, now=utcnow(), outcome=call.status)
    await session.flush()
    await complete_if_done(session, campaign)


# --- the processor ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedItem:
    item_id: int
    campaign_id: int
    user_id: int
    agent_id: int
    phone_number: str
    attempt: int


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CampaignProcessor:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        bolna: BolnaClient,
        settings: Settings,
        owner: str | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._bolna = bolna
        self._settings = settings
        self.owner = owner or default_owner()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._rotation = 0

    async def tick(self) -> int:
        """Reclaim expired leases, then claim and start dialing; returns how many claimed."""
        if self._closing:
            return 0
        now = utcnow()
        await self._reclaim_expired(now)
        slots = self._settings.campaign_claim_batch - len(self._tasks)
        if slots <= 0:
            return 0
        async with self._sessionmaker() as session:
            campaigns = list(
                await session.scalars(
                    select(Campaign).where(Campaign.status == "running").order_by(Campaign.id)
                )
            )
        if not campaigns:
            return 0
        # Rotate the starting campaign so that a busy process is fair to all of them.
        self._rotation = (self._rotation + 1) % len(campaigns)
        campaigns = campaigns[self._rotation :] + campaigns[: self._rotation]
        claimed_total = 0
        for campaign in campaigns:
            if slots <= 0 or self._closing:
                break
            if not window_is_open(campaign_window(campaign), now):
                continue
            claimed, links = await self._claim(campaign.id, now, slots)
            for item in claimed:
                self._spawn(item, links)
            slots -= len(claimed)
            claimed_total += len(claimed)
        return claimed_total

    async def aclose(self) -> None:
        """Stop claiming; give dials already started `campaign_drain_seconds` to finish."""
        self._closing = True
        tasks = set(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._settings.campaign_drain_seconds)
        for task in pending:
            task.cancel()
        # Cancelled dials stay `dialing` under our lease and are reclaimed when it expires.
        await asyncio.gather(*pending, return_exceptions=True)

    async def _claim(
        self, campaign_id: int, now: datetime, slots: int
    ) -> tuple[list[ClaimedItem], list[Link]]:
        is_sqlite = self._settings.is_sqlite
        async with self._sessionmaker() as session, session.begin():
            if is_sqlite:
                # One processor on SQLite; the claim UPDATE below re-checks the status.
                campaign = await session.get(Campaign, campaign_id)
            else:
                campaign = await lock_campaign(session, campaign_id, skip_locked=True)
            if campaign is None or campaign.status != "running":
                return [], []
            in_flight = int(
                await session.scalar(
                    select(func.count()).where(
                        CampaignItem.campaign_id == campaign_id,
                        CampaignItem.state.in_(IN_FLIGHT_STATES),
                    )
                )
                or 0
            )
            capacity = min(campaign.max_concurrency - in_flight, slots)
            if capacity <= 0:
                return [], []
            due = (
                select(CampaignItem.id)
                .where(
                    CampaignItem.campaign_id == campaign_id,
                    CampaignItem.state == "pending",
                    CampaignItem.next_attempt_at <= now,
                )
                .order_by(CampaignItem.next_attempt_at, CampaignItem.id)
                .limit(capacity)
            )
            if not is_sqlite:
                due = due.with_for_update(skip_locked=True)
            ids = list(await session.scalars(due))
            if not ids:
                return [], []
            balance = await balance_of(session, campaign.user_id)
            per_call = self._settings.min_credits_to_call
            if balance < per_call:
                await self._pause_for_credits(session, campaign)
                return [], []
            # Calls are charged when they end: keep no more in flight than the balance could
            # pay the minimum for, so a large campaign does not overdraw it as it runs dry.
            if per_call > 0:
                ids = ids[: max(balance // per_call - in_flight, 0)]
                if not ids:
                    return [], []
            with _tracer.start_as_current_span("campaign.claim") as span:
                span.set_attribute(attrs.FEATURE, "campaign")
                span.set_attribute(attrs.CAMPAIGN_ID, campaign_id)
                still_running = (
                    select(Campaign.id)
                    .where(Campaign.id == campaign_id, Campaign.status == "running")
                    .exists()
                )
                rows = await session.execute(
                    update(CampaignItem)
                    .where(CampaignItem.id.in_(ids), CampaignItem.state == "pending", still_running)
                    .values(
                        state="dialing",
                        attempts=CampaignItem.attempts + 1,
                        dialed_at=now,
                        lease_owner=self.owner,
                        lease_expires_at=now
                        + timedelta(seconds=self._settings.campaign_lease_seconds),
                        call_id=None,
                        updated_at=now,
                    )
                    .returning(CampaignItem.id, CampaignItem.phone_number, CampaignItem.attempts)
                    .execution_options(synchronize_session=False)
                )
                claimed = [
                    ClaimedItem(
                        item_id=item_id,
                        campaign_id=campaign_id,
                        user_id=campaign.user_id,
                        agent_id=campaign.agent_id,
                        phone_number=phone,
                        attempt=attempt,
                    )
                    for item_id, phone, attempt in rows
                ]
                span.set_attribute(attrs.QUEUE_CLAIMED, len(claimed))
                links = [Link(span.get_span_context())] if span.get_span_context().is_valid else []
            return claimed, links

    def _spawn(self, item: ClaimedItem, links: list[Link]) -> None:
        # Each dial is its own trace, linked to the claim, so a long campaign is not one trace.
        task = asyncio.create_task(self.dispatch(item, links), name=f"campaign-dial-{item.item_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def dispatch(self, item: ClaimedItem, links: Sequence[Link] = ()) -> None:
        """Dial one claimed item and settle what can be settled now (never raises)."""
        token = otel_context.attach(otel_context.Context())
        try:
            with _tracer.start_as_current_span("campaign.dispatch", links=links) as span:
                span.set_attribute(attrs.FEATURE, "campaign")
                span.set_attribute(attrs.CALL_SOURCE, "campaign")
                span.set_attribute(attrs.CAMPAIGN_ID, item.campaign_id)
                span.set_attribute(attrs.QUEUE_ITEM_ID, item.item_id)
                span.set_attribute(attrs.QUEUE_ITEM_ATTEMPT, item.attempt)
                span.set_attribute(attrs.ENDUSER_ID, str(item.user_id))
                await self._dial(item, span)
        finally:
            otel_context.detach(token)

    async def _dial(self, item: ClaimedItem, span: trace.Span) -> None:
        try:
            async with self._sessionmaker() as session:
                call = await initiate_call(
                    session,
                    CallRequest(
                        user_id=item.user_id,
                        agent_id=item.agent_id,
                        phone_number=item.phone_number,
                        call_source="campaign",
                        campaign_id=item.campaign_id,
                        campaign_item_id=item.item_id,
                    ),
                    bolna=self._bolna,
                    settings=self._settings,
                )
        except InsufficientCredits:
            span.add_event("campaign.paused", {"reason": "insufficient_credits"})
            await self._settle_dial(item, release="insufficient_credits")
        except BolnaUnauthorized as exc:
            # Our API key is wrong: every dial would fail the same way, so stop dialing.
            span.set_status(Status(StatusCode.ERROR, exc.code))
            await self._settle_dial(item, release="provider_unauthorized")
        except BolnaError as exc:
            # Already reported by initiate_call (feature "campaign_call").
            span.set_status(Status(StatusCode.ERROR, exc.code))
            span.set_attribute(attrs.ERROR_TYPE, type(exc).__name__)
            await self._settle_dial(
                item, error=f"{exc.code}: {exc.detail}", retryable=not exc.expected
            )
        except AppError as exc:
            span.set_status(Status(StatusCode.ERROR, exc.code))
            if not exc.expected:
                self._report(exc, item)
            await self._settle_dial(item, error=exc.detail, retryable=not exc.expected)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute(attrs.ERROR_TYPE, type(exc).__name__)
            self._report(exc, item)
            if not is_database_unavailable(exc):
                await self._settle_dial(
                    item, error=f"internal error: {type(exc).__name__}", retryable=True
                )
            # Without a database the item stays `dialing`; its lease expiry reclaims it.
        else:
            span.set_attribute(attrs.CALL_ID, call.id)
            await self._mark_dialed(item, call.id)

    def _report(self, exc: BaseException, item: ClaimedItem) -> None:
        capture_error(
            exc,
            feature="campaign",
            campaign_id=item.campaign_id,
            queue_item_id=item.item_id,
            queue_item_attempt=item.attempt,
        )

    async def _mark_dialed(self, item: ClaimedItem, call_id: int) -> None:
        now = utcnow()
        try:
            async with self._sessionmaker() as session, session.begin():
                # A no-op when the call already ended and the listener settled the item.
                await session.execute(
                    update(CampaignItem)
                    .where(*self._still_ours(item))
                    .values(
                        state="in_progress",
                        call_id=call_id,
                        lease_expires_at=now
                        + timedelta(seconds=self._settings.campaign_call_timeout_seconds),
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
        except Exception as exc:
            # The item stays `dialing`; the lease reclaim adopts its call.
            self._report(exc, item)

    def _still_ours(self, item: ClaimedItem) -> tuple[ColumnElement[bool], ...]:
        return (
            CampaignItem.id == item.item_id,
            CampaignItem.state == "dialing",
            CampaignItem.lease_owner == self.owner,
            CampaignItem.attempts == item.attempt,
        )

    async def _settle_dial(
        self,
        item: ClaimedItem,
        *,
        release: str | None = None,
        error: str = "",
        retryable: bool = True,
    ) -> None:
        """After a dial that placed no call: release the item (pausing the campaign), or
        retry / fail it per the policy."""
        try:
            async with self._sessionmaker() as session, session.begin():
                campaign = await lock_campaign(session, item.campaign_id)
                row = await session.scalar(
                    select(CampaignItem)
                    .where(*self._still_ours(item))
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
                if campaign is None or row is None:
                    return
                now = utcnow()
                if release is not None:
                    await self._release(session, campaign, row, release, now)
                    return
                settlement = settle_after_dial_error(
                    error,
                    retryable=retryable,
                    attempts=row.attempts,
                    policy=RetryPolicy.of(campaign),
                    campaign_status=campaign.status,
                )
                row.call_id = await _latest_call_id(session, row)
                apply_settlement(row, settlement, now=now, outcome=error.split(":", 1)[0])
                await session.flush()
                await complete_if_done(session, campaign)
        except Exception as exc:
            self._report(exc, item)

    async def _release(
        self,
        session: AsyncSession,
        campaign: Campaign,
        row: CampaignItem,
        reason: str,
        now: datetime,
    ) -> None:
        """Put an item back without counting the attempt, pausing its campaign for `reason`."""
        row.attempts = max(row.attempts - 1, 0)
        row.last_outcome = reason
        row.lease_owner = None
        row.lease_expires_at = None
        row.state = "canceled" if campaign.status == "canceled" else "pending"
        row.failure_reason = "campaign canceled" if row.state == "canceled" else None
        if campaign.status in ("running", "scheduled"):
            campaign.status = "paused"
            campaign.pause_reason = reason
            log.warning("campaign %s paused: %s", campaign.id, reason)

    async def _pause_for_credits(self, session: AsyncSession, campaign: Campaign) -> None:
        if self._settings.is_sqlite:
            locked = await lock_campaign(session, campaign.id)
            if locked is None:
                return
            campaign = locked
        if campaign.status == "running":
            campaign.status = "paused"
            campaign.pause_reason = "insufficient_credits"
            log.warning("campaign %s paused: insufficient_credits", campaign.id)

    async def _reclaim_expired(self, now: datetime) -> None:
        async with self._sessionmaker() as session:
            expired = list(
                await session.execute(
                    select(CampaignItem.id, CampaignItem.campaign_id)
                    .where(
                        CampaignItem.state.in_(IN_FLIGHT_STATES),
                        CampaignItem.lease_expires_at < now,
                    )
                    .order_by(CampaignItem.lease_expires_at)
                    .limit(RECLAIM_BATCH)
                )
            )
        for item_id, campaign_id in expired:
            try:
                await self._reclaim(item_id, campaign_id, now)
            except Exception as exc:
                capture_error(
                    exc, feature="campaign", campaign_id=campaign_id, queue_item_id=item_id
                )

    async def _reclaim(self, item_id: int, campaign_id: int, now: datetime) -> None:
        with _tracer.start_as_current_span("campaign.reclaim") as span:
            span.set_attribute(attrs.FEATURE, "campaign")
            span.set_attribute(attrs.CAMPAIGN_ID, campaign_id)
            span.set_attribute(attrs.QUEUE_ITEM_ID, item_id)
            async with self._sessionmaker() as session, session.begin():
                campaign = await lock_campaign(session, campaign_id)
                query = (
                    select(CampaignItem)
                    .where(
                        CampaignItem.id == item_id,
                        CampaignItem.state.in_(IN_FLIGHT_STATES),
                        CampaignItem.lease_expires_at < now,
                    )
                    .execution_options(populate_existing=True)
                )
                if not self._settings.is_sqlite:
                    query = query.with_for_update(skip_locked=True)
                item = await session.scalar(query)
                if campaign is None or item is None:
                    return
                span.set_attribute(attrs.QUEUE_ITEM_ATTEMPT, item.attempts)
                outcome = await self._recover(session, campaign, item, now)
                span.add_event("campaign.reclaimed", {"outcome": outcome})
                log.warning("campaign item %s reclaimed: %s", item_id, outcome)
                await session.flush()
                await complete_if_done(session, campaign)

    async def _recover(
        self, session: AsyncSession, campaign: Campaign, item: CampaignItem, now: datetime
    ) -> str:
        policy = RetryPolicy.of(campaign)
        if item.state == "in_progress":
            call = await session.get(Call, item.call_id) if item.call_id else None
            if call is not None and call.status in FINAL:
                settlement = settle_after_call(
                    call.status,
                    attempts=item.attempts,
                    policy=policy,
                    campaign_status=campaign.status,
                )
                apply_settlement(item, settlement, now=now, outcome=call.status)
                return "settled"
            # Never re-dialed: the call may still be going on.
            timeout = int(self._settings.campaign_call_timeout_seconds)
            apply_settlement(
                item,
                Settlement("failed", reason=f"no final call status within {timeout} s"),
                now=now,
                outcome="timeout",
            )
            return "timed_out"

        call = await _attempt_call(session, item)
        if call is None:
            # The process died before placing the call: not an attempt.
            await self._release_unplaced(campaign, item)
            return "released"
        item.call_id = call.id
        if call.status in FINAL:
            settlement = settle_after_call(
                call.status, attempts=item.attempts, policy=policy, campaign_status=campaign.status
            )
            apply_settlement(item, settlement, now=now, outcome=call.status)
            return "settled"
        if call.execution_id:
            item.state = "in_progress"
            item.lease_owner = self.owner
            item.lease_expires_at = now + timedelta(
                seconds=self._settings.campaign_call_timeout_seconds
            )
            return "adopted"
        # Bolna was being asked when the process died; whether it placed the call is unknown.
        abandoned = await session.execute(
            update(Call)
            .where(Call.id == call.id, Call.execution_id.is_(None), Call.status == "queued")
            .values(status="failed", failure_reason="abandoned: the process placing it stopped")
            .execution_options(synchronize_session=False)
        )
        if not getattr(abandoned, "rowcount", 0):
            # Its dial got an answer meanwhile: look again after another lease.
            item.lease_expires_at = now + timedelta(seconds=self._settings.campaign_lease_seconds)
            return "extended"
        settlement = settle_after_dial_error(
            "abandoned dial",
            retryable=True,
            attempts=item.attempts,
            policy=policy,
            campaign_status=campaign.status,
        )
        apply_settlement(item, settlement, now=now, outcome="abandoned")
        return "retried"

    async def _release_unplaced(self, campaign: Campaign, item: CampaignItem) -> None:
        item.attempts = max(item.attempts - 1, 0)
        item.lease_owner = None
        item.lease_expires_at = None
        if campaign.status == "canceled":
            item.state = "canceled"
            item.failure_reason = "campaign canceled"
        else:
            item.state = "pending"


async def _attempt_call(session: AsyncSession, item: CampaignItem) -> Call | None:
    """The call placed for the item's current attempt, if any."""
    query = select(Call).where(Call.campaign_item_id == item.id)
    if item.dialed_at is not None:
        query = query.where(Call.created_at >= item.dialed_at)
    # Not locked: webhooks lock the call before the campaign, we hold the campaign already.
    call: Call | None = await session.scalar(
        query.order_by(Call.id.desc()).limit(1), execution_options={"populate_existing": True}
    )
    return call


async def _latest_call_id(session: AsyncSession, item: CampaignItem) -> int | None:
    call = await _attempt_call(session, item)
    return call.id if call is not None else None
