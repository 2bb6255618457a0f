"""Campaign test support: fast loops, the stack with campaigns wired, several API instances
sharing one simulator (restarts, two processors), and small API helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.campaigns.processor import PROCESSOR_WORKER, CampaignProcessor
from app.campaigns.wiring import add_workers, install
from app.config import Settings
from app.main import create_app
from app.simulator import create_simulator_app, simulator_state
from tests.conftest import (
    API_BASE,
    BOLNA_BASE,
    ASGITransportWithTimeouts,
    Stack,
    create_user_token,
    make_settings,
    quiet_telemetry,
    running_stack,
)
from tests.helpers import eventually

FAST_LOOPS: dict[str, Any] = {
    "campaign_tick_seconds": 0.02,
    "campaign_lease_seconds": 5.0,
    "campaign_call_timeout_seconds": 60.0,
    "campaign_drain_seconds": 5.0,
}


def campaign_settings(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, **{**FAST_LOOPS, **overrides})


def ensure_campaigns(app: FastAPI) -> None:
    """Wire campaigns into an app whose factory does not (yet) do it; a no-op once it does."""
    if not any(getattr(route, "path", "").startswith("/campaigns") for route in app.routes):
        install(app)
    workers = app.state.workers
    if PROCESSOR_WORKER not in workers.status():
        app.state.campaigns = add_workers(
            workers,
            sessionmaker=app.state.sessionmaker,
            bolna=app.state.bolna,
            settings=app.state.settings,
        )
        workers.start()


async def drain(app: FastAPI) -> None:
    processor: CampaignProcessor | None = getattr(app.state, "campaigns", None)
    if processor is not None:
        await processor.aclose()


@asynccontextmanager
async def campaign_stack(settings: Settings, *, step_delay_ms: int = 10) -> AsyncIterator[Stack]:
    """The usual in-process stack, campaigns wired, users alice (1000 credits) and bob."""
    async with running_stack(settings, step_delay_ms=step_delay_ms) as stack:
        ensure_campaigns(stack.app)
        stack.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
        stack.tokens["bob"] = await create_user_token(settings, "bob@example.com", 1000)
        try:
            yield stack
        finally:
            await drain(stack.app)


@pytest.fixture
def csettings(sqlite_url: str) -> Settings:
    return campaign_settings(sqlite_url)


@pytest.fixture
async def cstack(csettings: Settings) -> AsyncIterator[Stack]:
    async with campaign_stack(csettings) as stack:
        yield stack


# --- several API instances, one simulator ---------------------------------------------------


@dataclass
class SharedSimulator:
    app: FastAPI
    webhooks_to: httpx.ASGITransport  # point `.app` at the instance that receives webhooks
    client: httpx.AsyncClient


@asynccontextmanager
async def shared_simulator(
    settings: Settings, *, step_delay_ms: int = 10
) -> AsyncIterator[SharedSimulator]:
    webhooks_to = httpx.ASGITransport(app=None)  # type: ignore[arg-type]  # set per instance
    sim_app = create_simulator_app(
        public_base_url=settings.public_base_url,
        webhook_token=settings.bolna_webhook_token,
        api_key=settings.bolna_api_key,
        step_delay_ms=step_delay_ms,
        http_client=httpx.AsyncClient(transport=webhooks_to, timeout=10),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim_app), base_url=BOLNA_BASE
    ) as client:
        try:
            yield SharedSimulator(sim_app, webhooks_to, client)
        finally:
            await simulator_state(sim_app).aclose()


class CountingTransport(ASGITransportWithTimeouts):
    """Counts the calls this instance's Bolna client placed successfully."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app=app)
        self.placed: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path == "/call" and response.status_code == 200:
            self.placed.append(request.url.path)
        return response


@dataclass
class Instance:
    stack: Stack
    bolna: CountingTransport


@asynccontextmanager
async def api_instance(
    settings: Settings, sim: SharedSimulator, *, receives_webhooks: bool = True
) -> AsyncIterator[Instance]:
    """One API process (its own engine, workers and processor) dialing the shared simulator."""
    bolna = CountingTransport(sim.app)
    app = create_app(settings, telemetry_settings=quiet_telemetry(), bolna_transport=bolna)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API_BASE) as api,
    ):
        ensure_campaigns(app)
        if receives_webhooks:
            sim.webhooks_to.app = app
        stack = Stack(app=app, sim_app=sim.app, api=api, sim=sim.client, settings=settings)
        try:
            yield Instance(stack, bolna)
        finally:
            await drain(app)


# --- API helpers ---------------------------------------------------------------------------


async def make_contacts(
    stack: Stack, token: str, count: int, prefix: str = "+9198765"
) -> list[int]:
    ids = []
    for n in range(count):
        response = await stack.api.post(
            "/contacts",
            json={"name": f"Contact {n}", "phone_number": f"{prefix}{n:05d}"},
            headers=stack.auth(token),
        )
        assert response.status_code == 201, response.text
        ids.append(int(response.json()["id"]))
    return ids


def inline_contacts(count: int, prefix: str = "+9198000") -> list[dict[str, str]]:
    return [{"name": f"Person {n}", "phone_number": f"{prefix}{n:05d}"} for n in range(count)]


async def create_campaign(stack: Stack, token: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Reminders")
    response = await stack.api.post("/campaigns", json=body, headers=stack.auth(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def action(stack: Stack, token: str, campaign_id: int, verb: str) -> dict[str, Any]:
    response = await stack.api.post(f"/campaigns/{campaign_id}/{verb}", headers=stack.auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def get_campaign(stack: Stack, token: str, campaign_id: int) -> dict[str, Any]:
    response = await stack.api.get(f"/campaigns/{campaign_id}", headers=stack.auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_campaign(
    stack: Stack, token: str, campaign_id: int, status: str, timeout: float = 20.0
) -> dict[str, Any]:
    return await eventually(
        lambda: get_campaign(stack, token, campaign_id),
        lambda c: c["status"] == status,
        timeout=timeout,
    )


async def campaign_items(stack: Stack, token: str, campaign_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        response = await stack.api.get(
            f"/campaigns/{campaign_id}/items", params=params, headers=stack.auth(token)
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def sim_calls(stack: Stack) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = (await stack.sim.get("/_sim/calls")).json()
    return calls


def max_overlap(calls: list[dict[str, Any]]) -> int:
    """Most calls alive at once, each from the simulator receiving it to its last webhook."""
    events: list[tuple[datetime, int]] = []
    for call in calls:
        assert call["finished_at"], f"call {call['execution_id']} still playing"
        events.append((datetime.fromisoformat(call["received_at"]), 1))
        events.append((datetime.fromisoformat(call["finished_at"]), -1))
    alive = peak = 0
    for _, delta in sorted(events):  # at equal instants an end (-1) sorts before a start
        alive += delta
        peak = max(peak, alive)
    return peak


def phones_dialed(calls: list[dict[str, Any]]) -> list[str]:
    return sorted(call["recipient_phone_number"] for call in calls)
