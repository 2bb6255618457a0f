from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from app.auth.service import create_user
from app.credits.service import charge_call, credits_for_duration, grant
from app.db import create_engine, create_sessionmaker
from app.models import CreditLedgerEntry, User
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("seconds", "per_minute", "credits"),
    [
        (None, 10, 0),
        (0, 10, 0),
        (-3, 10, 0),
        (1, 10, 1),
        (60, 10, 10),
        (61, 10, 11),
        (6, 10, 1),
        (90.5, 7, 11),
    ],
)
def test_credits_for_duration_is_an_integer_rounded_up(seconds, per_minute, credits):
    assert credits_for_duration(seconds, per_minute) == credits


async def _user(sessionmaker, email="u@example.com", credits=100) -> int:
    async with sessionmaker() as session, session.begin():
        user = await create_user(session, email=email, password="password123")
        await grant(session, user.id, credits, reason="grant", idempotency_key=f"g:{user.id}")
        return user.id


async def test_concurrent_charges_for_one_call_deduct_once(database_url):
    settings = make_settings(database_url)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        user_id = await _user(sessionmaker)

        async def charge() -> None:
            for attempt in range(20):
                try:
                    async with sessionmaker() as session, session.begin():
                        await charge_call(
                            session, user_id=user_id, call_id=42, amount=30, settings=settings
                        )
                    return
                except Exception as exc:  # SQLite "database is locked" under contention
                    if "locked" not in str(exc) or attempt == 19:
                        raise
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(charge() for _ in range(8)))
        async with sessionmaker() as session:
            balance = await session.scalar(select(User.credits_balance).where(User.id == user_id))
            charges = await session.scalar(
                select(func.count())
                .select_from(CreditLedgerEntry)
                .where(CreditLedgerEntry.idempotency_key == "call:42")
            )
        assert balance == 70
        assert charges == 1
    finally:
        await engine.dispose()


async def test_concurrent_charges_for_different_calls_all_land(database_url):
    settings = make_settings(database_url)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        user_id = await _user(sessionmaker, credits=1000)

        async def charge(call_id: int) -> None:
            for attempt in range(50):
                try:
                    async with sessionmaker() as session, session.begin():
                        await charge_call(
                            session, user_id=user_id, call_id=call_id, amount=7, settings=settings
                        )
                    return
                except Exception as exc:
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(charge(i) for i in range(20)))
        async with sessionmaker() as session:
            balance = await session.scalar(select(User.credits_balance).where(User.id == user_id))
            ledger_sum = await session.scalar(
                select(func.sum(CreditLedgerEntry.amount)).where(
                    CreditLedgerEntry.user_id == user_id
                )
            )
        assert balance == 1000 - 20 * 7
        assert ledger_sum == balance
    finally:
        await engine.dispose()


async def test_low_balance_is_recorded_once_and_cleared_by_a_top_up(database_url):
    settings = make_settings(database_url, low_balance_threshold=50)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        user_id = await _user(sessionmaker, credits=100)
        async with sessionmaker() as session, session.begin():
            await charge_call(session, user_id=user_id, call_id=1, amount=60, settings=settings)
        async with sessionmaker() as session:
            first_mark = await session.scalar(
                select(User.low_balance_since).where(User.id == user_id)
            )
        assert first_mark is not None
        async with sessionmaker() as session, session.begin():
            await charge_call(session, user_id=user_id, call_id=2, amount=10, settings=settings)
        async with sessionmaker() as session:
            assert (
                await session.scalar(select(User.low_balance_since).where(User.id == user_id))
                == first_mark
            )
        async with sessionmaker() as session, session.begin():
            await grant(session, user_id, 500, reason="top_up", idempotency_key="t1")
        async with sessionmaker() as session:
            assert (
                await session.scalar(select(User.low_balance_since).where(User.id == user_id))
                is None
            )
    finally:
        await engine.dispose()


async def test_grants_are_idempotent_by_key(sqlite_url):
    settings = make_settings(sqlite_url)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        user_id = await _user(sessionmaker, credits=10)
        for _ in range(3):
            async with sessionmaker() as session, session.begin():
                await grant(session, user_id, 5, reason="top_up", idempotency_key="same")
        async with sessionmaker() as session:
            assert (
                await session.scalar(select(User.credits_balance).where(User.id == user_id)) == 15
            )
    finally:
        await engine.dispose()
