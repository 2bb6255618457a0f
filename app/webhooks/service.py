"""Webhook intake: store the raw delivery first, then process it in its own transaction.

    delivery = await store(sessionmaker, raw_body, settings)  # committed: nothing is lost
    outcome = await process(sessionmaker, delivery.id, settings)

A processing failure marks the stored delivery `failed` with its error and a next attempt
time; `app.webhooks.retry` picks it up later. Deliveries for an execution id we do not
know yet (Bolna can be faster than our own commit) are `unmatched` and retried too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.calls.service import notify_call_final
from app.config import Settings
from app.credits.service import charge_call, credits_for_duration
from app.db import utcnow
from app.errors import ValidationFailed
from app.models import Call, WebhookDelivery
from app.webhooks import payload as payload_mod
from app.webhooks.state import next_state
from telemetry import attributes as attrs
from telemetry import capture_error, link_from_traceparent

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
MAX_ERROR_CHARS = 2000


class WebhookRejected(ValidationFailed):
    """The body cannot be processed at all (not JSON, no execution id)."""

    code = "invalid_webhook"
    http_status = 400


class WebhookWithoutExecutionId(Exception):
    """Reported (not expected): Bolna sent something we cannot attribute to any call."""


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    state: str  # processed | duplicate | unmatched | failed | rejected
    call_id: int | None = None


async def store(
    sessionmaker: async_sessionmaker[AsyncSession], raw: bytes, settings: Settings
) -> WebhookDelivery:
    """Persist the raw body (append-only). Raises WebhookRejected for an unusable body."""
    text = raw.decode("utf-8", errors="replace")
    problem: str | None = None
    execution_id: str | None = None
    status: str | None = None
    try:
        body = payload_mod.loads(raw)
        execution_id = payload_mod.execution_id_of(body)
        status = str(body.get("status") or "")[:32] or None
        if execution_id is None:
            problem = "The webhook payload has no execution id (`id` or `execution_id`)."
        elif status is None:
            problem = "The webhook payload has no `status`."
    except payload_mod.PayloadError as exc:
        problem = str(exc)
    grace = timedelta(seconds=settings.webhook_received_grace_seconds)
    async with sessionmaker() as session, session.begin():
        delivery = WebhookDelivery(
            execution_id=execution_id,
            bolna_status=status,
            payload=text,
            state="rejected" if problem else "received",
            last_error=problem,
            # Picked up by the retry worker if this process dies before processing it.
            next_attempt_at=None if problem else utcnow() + grace,
        )
        session.add(delivery)
    span = trace.get_current_span()
    span.set_attribute(attrs.WEBHOOK_ID, delivery.id)
    if status:
        span.set_attribute(attrs.WEBHOOK_STATUS, status)
    if problem:
        if execution_id is None and status is not None:
            # Valid JSON from Bolna that names no call: worth an error event.
            capture_error(
                WebhookWithoutExecutionId(problem),
                feature="webhook",
                level="error",
                delivery_id=delivery.id,
                webhook_status=status,
            )
        raise WebhookRejected(problem, delivery_id=delivery.id)
    if execution_id:
        span.set_attribute(attrs.BOLNA_EXECUTION_ID, execution_id)
    return delivery


async def process(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int, settings: Settings
) -> Outcome:
    """Apply one stored delivery; a failure is recorded on the delivery, never raised."""
    with _tracer.start_as_current_span("webhook.process") as span:
        span.set_attribute(attrs.FEATURE, "webhook")
        span.set_attribute(attrs.WEBHOOK_ID, delivery_id)
        try:
            async with sessionmaker() as session, session.begin():
                outcome = await _apply(session, delivery_id, settings, span)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute(attrs.ERROR_TYPE, type(exc).__name__)
            attempts = await _mark_failed(sessionmaker, delivery_id, exc, settings)
            capture_error(exc, feature="webhook", delivery_id=delivery_id, webhook_attempt=attempts)
            span.set_attribute(attrs.WEBHOOK_OUTCOME, "failed")
            return Outcome(delivery_id, "failed")
        span.set_attribute(attrs.WEBHOOK_OUTCOME, outcome.state)
        return outcome


async def _apply(
    session: AsyncSession, delivery_id: int, settings: Settings, span: trace.Span
) -> Outcome:
    delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise LookupError(f"webhook delivery {delivery_id} does not exist")
    event = payload_mod.parse(payload_mod.loads(delivery.payload.encode()))
    span.set_attribute(attrs.WEBHOOK_STATUS, event.status)
    span.set_attribute(attrs.BOLNA_EXECUTION_ID, event.execution_id)
    delivery.attempts += 1
    call = await session.scalar(
        select(Call).where(Call.execution_id == event.execution_id).with_for_update()
    )
    if call is None:
        delivery.state = "unmatched"
        delivery.next_attempt_at = utcnow() + _backoff(delivery.attempts, settings)
        return Outcome(delivery_id, "unmatched")

    span.set_attribute(attrs.CALL_ID, call.id)
    span.set_attribute(attrs.CALL_SOURCE, call.call_source)
    if call.campaign_id is not None:
        span.set_attribute(attrs.CAMPAIGN_ID, call.campaign_id)
    for link in link_from_traceparent(call.traceparent, {attrs.CALL_ID: call.id}):
        span.add_link(link.context, link.attributes)

    transition = next_state(call.status, event.status)
    _merge_details(call, event)
    delivery.processed_at = utcnow()
    delivery.next_attempt_at = None
    delivery.last_error = None
    if not transition.apply:
        delivery.state = "duplicate"
        return Outcome(delivery_id, "duplicate", call.id)

    call.status = transition.status
    span.set_attribute(attrs.CALL_STATUS, call.status)
    if transition.final and event.status != "completed" and call.failure_reason is None:
        call.failure_reason = event.error_message or event.status
    if transition.charge:
        amount = credits_for_duration(call.duration_seconds, settings.credits_per_minute)
        entry = await charge_call(
            session, user_id=call.user_id, call_id=call.id, amount=amount, settings=settings
        )
        call.credits_charged = -entry.amount if entry is not None else 0
    if transition.final:
        await notify_call_final(session, call)
    delivery.state = "processed"
    return Outcome(delivery_id, "processed", call.id)


def _merge_details(call: Call, event: payload_mod.BolnaEvent) -> None:
    """Keep the richest data seen, whichever delivery brought it."""
    if event.duration_seconds is not None and (
        call.duration_seconds is None or event.duration_seconds > call.duration_seconds
    ):
        call.duration_seconds = event.duration_seconds
    if event.transcript and not call.transcript:
        call.transcript = event.transcript
    if event.recording_url and not call.recording_url:
        call.recording_url = event.recording_url
    if event.hangup_reason and not call.hangup_reason:
        call.hangup_reason = event.hangup_reason


def _backoff(attempts: int, settings: Settings) -> timedelta:
    seconds = settings.webhook_retry_base_seconds * (2 ** max(attempts - 1, 0))
    return timedelta(seconds=min(seconds, 300.0))


async def _mark_failed(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: int,
    exc: BaseException,
    settings: Settings,
) -> int:
    async with sessionmaker() as session, session.begin():
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return 0
        delivery.attempts += 1
        delivery.state = "failed"
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        delivery.next_attempt_at = utcnow() + _backoff(delivery.attempts, settings)
        return delivery.attempts
