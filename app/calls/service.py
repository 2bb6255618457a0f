"""Placing calls (direct and campaign) and reading them back.

`initiate_call` writes the call row and commits it *before* asking Bolna, so a crash or
a Bolna failure never leaves a call without a record; the row then gets the execution id
or `status=failed` with a reason. Campaign calls go through the same function with
`call_source="campaign"`.

Listeners registered with `on_call_final` run inside the webhook's transaction when a
call reaches a final status (campaigns use it to move their queue items).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.service import get_agent
from app.bolna.client import BolnaClient
from app.bolna.errors import BolnaError
from app.config import Settings
from app.contacts.service import get_contact
from app.credits.service import ensure_can_call
from app.errors import NotFound, ValidationFailed
from app.models import Call
from app.phone import normalize_e164
from telemetry import attributes as attrs
from telemetry import capture_error, current_traceparent

CallSource = Literal["direct", "campaign"]
CallFinalListener = Callable[[AsyncSession, Call], Awaitable[None]]

_tracer = trace.get_tracer(__name__)
_final_listeners: list[CallFinalListener] = []


def on_call_final(listener: CallFinalListener) -> CallFinalListener:
    """Register `listener(session, call)` to run when a call reaches a final status."""
    if listener not in _final_listeners:
        _final_listeners.append(listener)
    return listener


async def notify_call_final(session: AsyncSession, call: Call) -> None:
    for listener in _final_listeners:
        await listener(session, call)


@dataclass(frozen=True)
class CallRequest:
    user_id: int
    agent_id: int
    contact_id: int | None = None
    phone_number: str | None = None
    call_source: CallSource = "direct"
    campaign_id: int | None = None
    campaign_item_id: int | None = None


async def initiate_call(
    session: AsyncSession, request: CallRequest, *, bolna: BolnaClient, settings: Settings
) -> Call:
    """Place one call. Raises a domain error (the call row, if written, says why it failed)."""
    feature = "campaign_call" if request.call_source == "campaign" else "call_initiation"
    with _tracer.start_as_current_span("call.initiate") as span:
        span.set_attribute(attrs.FEATURE, feature)
        span.set_attribute(attrs.CALL_SOURCE, request.call_source)
        span.set_attribute(attrs.AGENT_ID, request.agent_id)
        span.set_attribute(attrs.ENDUSER_ID, str(request.user_id))
        if request.campaign_id is not None:
            span.set_attribute(attrs.CAMPAIGN_ID, request.campaign_id)
        if request.campaign_item_id is not None:
            span.set_attribute(attrs.QUEUE_ITEM_ID, request.campaign_item_id)
        try:
            return await _initiate(session, request, bolna, settings, span, feature)
        except Exception as exc:
            # Expected errors (unknown agent, no credits) are dropped by the policy; a
            # Bolna failure was captured below with its call id and is not sent twice.
            capture_error(
                exc,
                feature=feature,
                call_source=request.call_source,
                campaign_id=request.campaign_id,
                agent_id=request.agent_id,
            )
            raise


async def _initiate(
    session: AsyncSession,
    request: CallRequest,
    bolna: BolnaClient,
    settings: Settings,
    span: trace.Span,
    feature: str,
) -> Call:
    agent = await get_agent(session, user_id=request.user_id, agent_id=request.agent_id)
    phone = await _resolve_phone(session, request)
    await ensure_can_call(session, request.user_id, settings)

    call = Call(
        user_id=request.user_id,
        agent_id=agent.id,
        contact_id=request.contact_id,
        phone_number=phone,
        status="queued",
        call_source=request.call_source,
        campaign_id=request.campaign_id,
        campaign_item_id=request.campaign_item_id,
        traceparent=current_traceparent(),
    )
    session.add(call)
    await session.flush()
    span.set_attribute(attrs.CALL_ID, call.id)
    # Durable before Bolna is asked: whatever happens next, the call has a record.
    await session.commit()

    try:
        execution_id = await bolna.make_call(
            agent_id=agent.bolna_agent_id,
            recipient_phone_number=phone,
            from_phone_number=settings.bolna_from_phone_number or None,
            user_data={"call_id": str(call.id)},
        )
    except BolnaError as exc:
        call.status = "failed"
        call.failure_reason = exc.detail
        await session.commit()
        span.set_status(Status(StatusCode.ERROR, exc.code))
        span.set_attribute(attrs.ERROR_TYPE, type(exc).__name__)
        capture_error(
            exc,
            feature=feature,
            call_source=request.call_source,
            call_id=call.id,
            campaign_id=request.campaign_id,
            agent_id=agent.id,
            endpoint=exc.endpoint,
            http_status=exc.bolna_status,
        )
        raise
    call.execution_id = execution_id
    await session.commit()
    span.set_attribute(attrs.BOLNA_EXECUTION_ID, execution_id)
    return call


async def _resolve_phone(session: AsyncSession, request: CallRequest) -> str:
    if request.contact_id is not None:
        contact = await get_contact(session, user_id=request.user_id, contact_id=request.contact_id)
        return contact.phone_number
    if not request.phone_number:
        raise ValidationFailed("Give either contact_id or phone_number.")
    phone = normalize_e164(request.phone_number)
    if phone is None:
        raise ValidationFailed(
            "phone_number must be in E.164 form, a + and 7 to 15 digits, e.g. +919876543210."
        )
    return phone


async def get_call(session: AsyncSession, *, user_id: int, call_id: int) -> Call:
    call = await session.scalar(select(Call).where(Call.id == call_id, Call.user_id == user_id))
    if call is None:
        raise NotFound(f"Call {call_id} was not found.")
    return call


def encode_cursor(call_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": call_id}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(value["before"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this API returned.") from exc


async def list_calls(
    session: AsyncSession,
    *,
    user_id: int,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Call], str | None]:
    """Newest first; the returned cursor fetches the next page, None at the end."""
    query = select(Call).where(Call.user_id == user_id)
    if status:
        query = query.where(Call.status == status)
    if cursor:
        query = query.where(Call.id < decode_cursor(cursor))
    rows = list(await session.scalars(query.order_by(Call.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
