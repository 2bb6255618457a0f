"""Reprocess failed and unmatched webhook deliveries with exponential backoff.

A delivery that still fails after `WEBHOOK_RETRY_MAX_ATTEMPTS` becomes `given_up` (and
is reported); one whose execution id never matched a call becomes `orphaned` (logged).
Both stay in the table, visible.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import utcnow
from app.models import WebhookDelivery
from app.webhooks.service import process
from telemetry import attributes as attrs
from telemetry import capture_error

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
BATCH = 50


class WebhookRetriesExhausted(Exception):
    """A stored delivery could not be processed after every retry."""


async def retry_due(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Process the deliveries whose next attempt is due; returns how many were tried."""
    async with sessionmaker() as session:
        due = list(
            await session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.state.in_(("failed", "unmatched", "received")),
                    WebhookDelivery.next_attempt_at <= utcnow(),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(BATCH)
            )
        )
    for delivery_id in due:
        with _tracer.start_as_current_span("webhook.retry") as span:
            span.set_attribute(attrs.WEBHOOK_ID, delivery_id)
            outcome = await process(sessionmaker, delivery_id, settings)
            span.set_attribute(attrs.WEBHOOK_OUTCOME, outcome.state)
            if outcome.state in ("failed", "unmatched"):
                await _give_up_if_exhausted(sessionmaker, delivery_id, settings)
    return len(due)


async def _give_up_if_exhausted(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int, settings: Settings
) -> None:
    async with sessionmaker() as session, session.begin():
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.attempts < settings.webhook_retry_max_attempts:
            return
        span = trace.get_current_span()
        span.set_attribute(attrs.WEBHOOK_ATTEMPT, delivery.attempts)
        delivery.next_attempt_at = None
        if delivery.state == "unmatched":
            delivery.state = "orphaned"
            log.warning(
                "webhook delivery %s names an execution id no call has; kept as orphaned",
                delivery_id,
            )
            return
        delivery.state = "given_up"
        capture_error(
            WebhookRetriesExhausted(
                f"webhook delivery {delivery_id} failed {delivery.attempts} times: "
                f"{delivery.last_error}"
            ),
            feature="webhook",
            level="error",
            delivery_id=delivery_id,
            webhook_attempt=delivery.attempts,
        )
