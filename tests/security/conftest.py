"""The security suite's stack: API and simulator in-process, no background workers (so
what a test sends is all that happens), and two users with an agent, a contact and a
call each, so fuzzed and forged ids can hit real rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from sqlalchemy import update

from app.config import Settings
from app.models import Call
from telemetry.settings import TelemetrySettings
from tests.conftest import Stack, _sqlite_copy, create_user_token, make_settings, running_stack
from tests.helpers import make_agent, make_contact, wait_sim_idle


def assert_clear_error(response: httpx.Response) -> None:
    """A 4xx is our error body with a sentence, never FastAPI's list of validation dicts."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.text[:200],
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and body["error"].replace("_", "").isalpha(), body
    detail = body["detail"]
    assert isinstance(detail, str) and len(detail.split()) >= 3, body
    assert detail.rstrip(".") != HTTPStatus(response.status_code).phrase, body
    assert "Traceback" not in detail and "object at 0x" not in detail, body


async def reopen(stack: Stack, call_id: int) -> None:
    """Put a finished call back in flight, so a delivery would move it."""
    async with stack.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Call)
            .where(Call.id == call_id)
            .values(status="ringing", duration_seconds=None, credits_charged=0)
        )


@dataclass(frozen=True)
class Owned:
    """Ids of rows one user owns: another user's requests must never reach them."""

    agent_id: int
    contact_id: int
    call_id: int
    execution_id: str
    campaign_id: int


async def seed(stack: Stack, token: str, phone: str) -> Owned:
    agent_id = await make_agent(stack, token)
    contact_id = await make_contact(stack, token, phone=phone)
    call = await stack.api.post(
        "/calls", json={"agent_id": agent_id, "contact_id": contact_id}, headers=stack.auth(token)
    )
    assert call.status_code == 201, call.text
    campaign = await stack.api.post(
        "/campaigns",
        json={"name": "Spring", "agent_id": agent_id, "contact_ids": [contact_id]},
        headers=stack.auth(token),
    )
    assert campaign.status_code == 201, campaign.text
    return Owned(
        agent_id,
        contact_id,
        int(call.json()["id"]),
        str(call.json()["execution_id"]),
        int(campaign.json()["id"]),
    )


@dataclass
class SecurityStack:
    stack: Stack
    owned: dict[str, Owned]
    cache: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def secured_stack(
    settings: Settings, *, telemetry_settings: TelemetrySettings | None = None
) -> AsyncIterator[SecurityStack]:
    async with running_stack(
        settings, telemetry_settings=telemetry_settings, start_workers=False
    ) as stack:
        stack.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
        stack.tokens["bob"] = await create_user_token(settings, "bob@example.com", 1000)
        owned = {
            "alice": await seed(stack, stack.tokens["alice"], "+919876543210"),
            "bob": await seed(stack, stack.tokens["bob"], "+14155550123"),
        }
        await wait_sim_idle(stack)
        yield SecurityStack(stack, owned)


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[SecurityStack]:
    """A fresh stack per test."""
    async with secured_stack(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SecurityStack]:
    """One stack for a whole module (its tests need `pytest.mark.asyncio(loop_scope="module")`):
    for fuzzing, where state left by one request is just more input for the next."""
    url = _sqlite_copy(sqlite_template, tmp_path_factory.mktemp("security"))
    async with secured_stack(make_settings(url)) as running:
        yield running


# Deterministic fuzzing for CI (same examples every run); function-scoped fixtures are
# shared on purpose (one stack per test, many examples).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
