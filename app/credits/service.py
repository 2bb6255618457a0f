"""Prepaid credits: integer balance on the user plus an append-only ledger.

Every change is one ledger row with a unique idempotency key and an atomic balance
update in the same transaction, so a retried webhook can never charge twice.
"""

from __future__ import annotations

import logging
import math

from opentelemetry import trace
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import InsufficientCredits, NotFound, ValidationFailed
from app.models import CreditLedgerEntry, User
from telemetry import attributes as attrs
from telemetry import capture_error, capture_message

_tracer = trace.get_tracer(__name__)
log = logging.getLogger(__name__)


def credits_for_duration(duration_seconds: float | None, credits_per_minute: int) -> int:
    """Credits for a call: proportional to its duration, rounded up to a whole credit."""
    if not duration_seconds or duration_seconds <= 0:
        return 0
    return math.ceil(duration_seconds * credits_per_minute / 60)


async def balance_of(session: AsyncSession, user_id: int) -> int:
    balance = await session.scalar(select(User.credits_balance).where(User.id == user_id))
    if balance is None:
        raise NotFound("User not found.")
    return int(balance)


async def ensure_can_call(session: AsyncSession, user_id: int, settings: Settings) -> int:
    """Refuse (402) when the balance cannot cover the minimum for one call."""
    with _tracer.start_as_current_span("credits.check") as span:
        balance = await balance_of(session, user_id)
        span.set_attribute(attrs.CREDITS_BALANCE, balance)
        required = settings.min_credits_to_call
        if balance < required:
            raise InsufficientCredits(
                f"Your balance of {balance} credits is below the {required} credits a call needs."
            )
        return balance


async def _apply(
    session: AsyncSession,
    user_id: int,
    amount: int,
    *,
    reason: str,
    idempotency_key: str,
    call_id: int | None = None,
) -> CreditLedgerEntry:
    existing = await session.scalar(
        select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == idempotency_key)
    )
    if existing is not None:
        return existing
    try:
        async with session.begin_nested():
            new_balance = await session.scalar(
                update(User)
                .where(User.id == user_id)
                .values(credits_balance=User.credits_balance + amount)
                .returning(User.credits_balance)
            )
            if new_balance is None:
                raise NotFound("User not found.")
            entry = CreditLedgerEntry(
                user_id=user_id,
                amount=amount,
                balance_after=int(new_balance),
                reason=reason,
                idempotency_key=idempotency_key,
                call_id=call_id,
            )
            session.add(entry)
            await session.flush()
    except IntegrityError:
        # Another transaction wrote the same key first: that write is the charge.
        existing = await session.scalar(
            select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == idempotency_key)
        )
        if existing is None:
            raise
        found: CreditLedgerEntry = existing
        return found
    return entry


async def grant(
    session: AsyncSession, user_id: int, amount: int, *, reason: str, idempotency_key: str
) -> CreditLedgerEntry:
    if amount <= 0:
        raise ValidationFailed("amount must be a positive number of credits.")
    entry = await _apply(session, user_id, amount, reason=reason, idempotency_key=idempotency_key)
    await session.execute(
        update(User)
        .where(User.id == user_id, User.credits_balance >= 0)
        .values(low_balance_since=None)
    )
    return entry


async def charge_call(
    session: AsyncSession, *, user_id: int, call_id: int, amount: int, settings: Settings
) -> CreditLedgerEntry | None:
    """Deduct a call's cost exactly once (key `call:<id>`); returns the ledger entry."""
    if amount <= 0:
        return None
    with _tracer.start_as_current_span("credits.deduct") as span:
        span.set_attribute(attrs.CREDITS_AMOUNT, amount)
        span.set_attribute(attrs.CALL_ID, call_id)
        try:
            entry = await _apply(
                session,
                user_id,
                -amount,
                reason="call",
                idempotency_key=f"call:{call_id}",
                call_id=call_id,
            )
        except Exception as exc:
            capture_error(exc, feature="credits", level="fatal", call_id=call_id, amount=amount)
            raise
        span.set_attribute(attrs.CREDITS_BALANCE, entry.balance_after)
        await _note_low_balance(session, user_id, entry.balance_after, settings)
        return entry


async def _note_low_balance(
    session: AsyncSession, user_id: int, balance: int, settings: Settings
) -> None:
    """Record when a balance first drops under the threshold (cleared by a top-up)."""
    if balance >= settings.low_balance_threshold:
        return
    with _tracer.start_as_current_span("credits.low_balance") as span:
        span.set_attribute(attrs.CREDITS_BALANCE, balance)
        marked = await session.execute(
            update(User)
            .where(User.id == user_id, User.low_balance_since.is_(None))
            .values(low_balance_since=utcnow())
        )
        if getattr(marked, "rowcount", 0):
            log.info("user %s balance is low (%s credits)", user_id, balance)
            if balance < 0:
                capture_message(
                    "credit balance went negative",
                    feature="credits",
                    level="warning",
                    user_id=user_id,
                )


async def ledger(session: AsyncSession, user_id: int, limit: int = 100) -> list[CreditLedgerEntry]:
    rows = await session.scalars(
        select(CreditLedgerEntry)
        .where(CreditLedgerEntry.user_id == user_id)
        .order_by(CreditLedgerEntry.id.desc())
        .limit(limit)
    )
    return list(rows)
