"""Webhook deliveries the test decides: the simulator places the calls but stays silent,
and the bodies are Bolna's, rendered by the simulator's own code.

    async with silent_stack(settings) as (stack, token):
        call = await place_call(stack, token)
        bodies = webhook_bodies(call["execution_id"])     # status -> raw body
        stored = await deliver_at_once(stack, [bodies["completed"]] * 20)
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import Call, CreditLedgerEntry, WebhookDelivery
from app.simulator._scenario import WebhookStep, new_scenario, render_webhook, status_sequence
from tests.conftest import Stack, create_user_token, running_stack
from tests.faults import PHONE
from tests.helpers import AGENT_UUID, eventually, make_agent
from tests.webhooks.test_webhooks_api import post_webhook

# The simulator's own webhooks would start after ten minutes: never, during a test.
SILENT_SIMULATOR_MS = 600_000
# One minute at the tests' 10 credits a minute.
CALL_SECONDS = 60.0
CALL_PRICE = 10
STARTING_CREDITS = 1000
SETTLED = frozenset({"processed", "duplicate"})


def webhook_bodies(execution_id: str, *, seed: int = 0) -> dict[str, bytes]:
    """Every webhook of a completed call of ``CALL_SECONDS``, by status, in Bolna's order."""
    now = datetime.now(UTC).isoformat()
    scenario = new_scenario(
        random.Random(seed),
        execution_id=execution_id,
        agent_id=AGENT_UUID,
        to_number=PHONE,
        from_number="",
        user_data={},
        outcome="completed",
        created_at=now,
    )
    scenario = dataclasses.replace(scenario, conversation_duration=CALL_SECONDS)
    return {
        status: render_webhook(scenario, WebhookStep(status), updated_at=now)
        for status in status_sequence("completed")
    }


@asynccontextmanager
async def silent_stack(settings: Settings) -> AsyncIterator[tuple[Stack, str]]:
    """The usual stack with its simulator silent, and a user with 1000 credits' token."""
    async with running_stack(settings, step_delay_ms=SILENT_SIMULATOR_MS) as stack:
        yield stack, await create_user_token(settings, "alice@example.com", STARTING_CREDITS)


async def place_call(stack: Stack, token: str, agent_id: int | None = None) -> dict[str, Any]:
    """``POST /calls`` (with a new agent unless given): the call, queued at Bolna."""
    if agent_id is None:
        agent_id = await make_agent(stack, token)
    response = await stack.api.post(
        "/calls", json={"agent_id": agent_id, "phone_number": PHONE}, headers=stack.auth(token)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["execution_id"], created
    return created


@dataclasses.dataclass(frozen=True)
class Stored:
    """What the database holds, read without the app (it may be down, or dead)."""

    deliveries: list[WebhookDelivery]
    calls: list[Call]
    ledger: list[CreditLedgerEntry]

    def charges(self) -> list[CreditLedgerEntry]:
        return [entry for entry in self.ledger if entry.reason == "call"]


async def read_stored(settings: Settings) -> Stored:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            return Stored(
                list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))),
                list(await session.scalars(select(Call).order_by(Call.id))),
                list(
                    await session.scalars(select(CreditLedgerEntry).order_by(CreditLedgerEntry.id))
                ),
            )
    finally:
        await engine.dispose()


def all_settled(stored: Stored) -> bool:
    return all(d.state in SETTLED for d in stored.deliveries)


async def deliver_at_once(stack: Stack, bodies: list[bytes]) -> Stored:
    """POST every body to the webhook at the same time; each must be accepted (applied, or
    stored for the retry worker). Returns what is stored once every delivery settled."""
    responses = await asyncio.gather(*(post_webhook(stack, body) for body in bodies))
    assert {r.status_code for r in responses} <= {200, 202}, [r.text for r in responses]
    return await eventually(lambda: read_stored(stack.settings), all_settled)
