"""Dependencies failing: Bolna down or slower than the client's timeout, and the database
briefly gone. Both run over real sockets on loopback, behind a relay the test cuts.

- Bolna (the simulator served by uvicorn): a call fails fast with a 5xx that says what
  happened and leaves a `failed` call row; campaign items are retried and complete once
  Bolna is back; direct calls work again without a restart.
- The database (PostgreSQL only, see below): `GET /health` answers 503 naming the
  database, writes answer 503 instead of hanging, and the service recovers by itself.

SQLite has no outage of this kind: it is a file opened by the process, with no server or
network between them. Its failure to open is covered by
``tests/test_health_and_config.py`` (a missing database answers 503), and a writer held
up by another one queues on the busy timeout (``app.db``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from app.migrate import empty_postgres_tables
from tests.campaigns.conftest import (
    action,
    campaign_items,
    campaign_settings,
    inline_contacts,
    shared_simulator,
    sim_calls,
    wait_campaign,
)
from tests.conftest import (
    API_BASE,
    Stack,
    create_user_token,
    make_settings,
    quiet_telemetry,
    running_stack,
)
from tests.faults import PHONE
from tests.helpers import eventually, make_agent, wait_for_call, wait_sim_idle
from tests.reliability.netfaults import TcpProxy, serve_on_loopback
from tests.webhooks.test_webhooks_api import post_webhook

# What "fast" means here: a few client timeouts (0.5 s read, two retries), far below the
# 30 s the simulator holds a "timeout" request or an unanswered connection would take.
FAIL_FAST_SECONDS = 10.0
RECOVERY_SECONDS = 15.0


async def answered_within(request: Awaitable[httpx.Response], seconds: float) -> httpx.Response:
    """The response, failing the test (not hanging it) when it takes ``seconds`` or more."""
    try:
        async with asyncio.timeout(seconds):
            return await request
    except TimeoutError:
        pytest.fail(f"no answer within {seconds}s: the request hangs")


# --- Bolna ---------------------------------------------------------------------------------


@asynccontextmanager
async def stack_with_bolna_behind_a_relay(
    settings: Settings,
) -> AsyncIterator[tuple[Stack, TcpProxy]]:
    """The API in-process, its Bolna client on the network: relay -> simulator (uvicorn).

    Cutting the relay makes Bolna unreachable; the simulator's webhooks still reach the
    API, and ``stack.sim`` still controls the simulator.
    """
    async with (
        shared_simulator(settings) as sim,
        serve_on_loopback(sim.app) as sim_url,
        TcpProxy("127.0.0.1", int(urlsplit(sim_url).port or 0)) as relay,
    ):
        settings = settings.model_copy(update={"bolna_api_url": relay.url()})
        app = create_app(settings, telemetry_settings=quiet_telemetry())
        sim.webhooks_to.app = app
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API_BASE) as api,
        ):
            stack = Stack(app=app, sim_app=sim.app, api=api, sim=sim.client, settings=settings)
            stack.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
            yield stack, relay


async def calls_of(stack: Stack, token: str) -> list[dict]:
    response = await stack.api.get("/calls", headers=stack.auth(token))
    assert response.status_code == 200, response.text
    items: list[dict] = response.json()["items"]
    return items


@pytest.mark.parametrize(
    ("outage", "status", "code"),
    [("down", 503, "bolna_unreachable"), ("slow", 504, "bolna_timeout")],
)
async def test_bolna_down_or_slow_fails_the_call_fast_with_a_clear_5xx_and_a_failed_row(
    sqlite_url: str, outage: str, status: int, code: str
) -> None:
    async with stack_with_bolna_behind_a_relay(make_settings(sqlite_url)) as (stack, relay):
        token = stack.tokens["alice"]
        agent_id = await make_agent(stack, token)
        body = {"agent_id": agent_id, "phone_number": PHONE}
        if outage == "down":
            relay.cut()
        else:  # every request held 30 s, far beyond the client's 0.5 s read timeout
            await stack.faults(call={"mode": "timeout", "timeout_s": 30})

        failed = await answered_within(
            stack.api.post("/calls", json=body, headers=stack.auth(token)), FAIL_FAST_SECONDS
        )
        assert failed.status_code == status, failed.text
        error = failed.json()
        assert error["error"] == code
        assert "Bolna" in error["detail"]
        [row] = await calls_of(stack, token)
        assert (row["status"], row["failure_reason"]) == ("failed", error["detail"])
        assert row["execution_id"] is None
        assert await sim_calls(stack) == []  # nobody was dialed

        # Bolna is back: the next call goes through without restarting anything.
        if outage == "down":
            await relay.restore()
        await stack.faults(call={"mode": "ok"})
        placed = await stack.api.post("/calls", json=body, headers=stack.auth(token))
        assert placed.status_code == 201, placed.text
        call = await wait_for_call(stack, token, placed.json()["id"])
        assert call["credits_charged"] > 0
        await wait_sim_idle(stack)


async def test_campaign_items_are_retried_while_bolna_is_down_and_complete_once_it_is_back(
    sqlite_url: str,
) -> None:
    settings = campaign_settings(sqlite_url)
    async with stack_with_bolna_behind_a_relay(settings) as (stack, relay):
        token = stack.tokens["alice"]
        agent_id = await make_agent(stack, token)
        created = await stack.api.post(
            "/campaigns",
            json={
                "name": "Reminders",
                "agent_id": agent_id,
                "contacts": inline_contacts(3),
                "max_concurrency": 3,
                "retry": {"max_attempts": 10, "backoff_seconds": 1},
            },
            headers=stack.auth(token),
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        relay.cut()
        await action(stack, token, campaign_id, "start")

        # Every contact's dial failed at least once and was put back for a retry.
        retried = await eventually(
            lambda: campaign_items(stack, token, campaign_id),
            lambda items: all(i["attempts"] >= 2 for i in items),
            timeout=RECOVERY_SECONDS,
        )
        assert {i["state"] for i in retried} <= {"pending", "dialing"}
        assert await sim_calls(stack) == []

        await relay.restore()
        done = await wait_campaign(stack, token, campaign_id, "completed", timeout=RECOVERY_SECONDS)
        assert done["progress"]["completed"] == 3
        items = await campaign_items(stack, token, campaign_id)
        assert all(i["attempts"] >= 2 and i["last_outcome"] == "completed" for i in items)
        await wait_sim_idle(stack)
        dialed = sorted(c["recipient_phone_number"] for c in await sim_calls(stack))
        assert dialed == sorted(i["phone_number"] for i in items)  # each contact once
        rows = await calls_of(stack, token)
        completed = [r for r in rows if r["status"] == "completed"]
        failed = [r for r in rows if r["status"] == "failed"]
        assert len(completed) == 3
        assert failed and all("Bolna could not be reached" in r["failure_reason"] for r in failed)


# --- the database --------------------------------------------------------------------------

# Short PostgreSQL timeouts (opening a connection; waiting for any statement's answer),
# so an unresponsive server costs the test seconds. Without them a partition hangs
# requests until TCP gives up.
DB_TIMEOUTS = {
    "db_connect_timeout_seconds": 1.0,
    "db_statement_timeout_seconds": 2.0,
    "db_pool_timeout_seconds": 2.0,
}


@asynccontextmanager
async def postgres_behind_a_relay(url: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """``url`` (emptied) reached through a relay; yields the relayed URL and the relay."""
    await empty_postgres_tables(url)
    parts = urlsplit(url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as relay:
        yield url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}", 1), relay


@asynccontextmanager
async def answering_like_a_server(stack: Stack) -> AsyncIterator[Stack]:
    """``stack`` whose API client gets the error response a server sends for an exception
    that escaped the app, instead of the exception itself."""
    transport = httpx.ASGITransport(app=stack.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=API_BASE) as api:
        yield dataclasses.replace(stack, api=api)


@pytest.mark.postgres
@pytest.mark.parametrize("hang", [False, True], ids=["down", "unresponsive"])
async def test_a_database_outage_answers_503_and_the_service_recovers_by_itself(
    migrated_postgres: str, hang: bool
) -> None:
    """Down: the server restarts (connections reset, new ones refused). Unresponsive: a
    network partition (connections open, nothing answers)."""
    async with postgres_behind_a_relay(migrated_postgres) as (url, relay):
        settings = make_settings(url, **DB_TIMEOUTS)
        async with running_stack(settings) as stack, answering_like_a_server(stack) as stack:
            token = await create_user_token(settings, "alice@example.com", 1000)
            auth = stack.auth(token)
            agent_id = await make_agent(stack, token)
            call = {"agent_id": agent_id, "phone_number": PHONE}
            contact = {"name": "Asha", "phone_number": PHONE}
            delivery = {"id": "exec-during-outage", "status": "ringing"}

            relay.cut(hang=hang)
            health = await answered_within(stack.api.get("/health"), FAIL_FAST_SECONDS)
            assert health.status_code == 503, health.text
            assert health.json()["status"] == "degraded"
            assert health.json()["db"].startswith("unavailable"), health.json()
            writes = [
                lambda: stack.api.post("/contacts", json=contact, headers=auth),
                lambda: stack.api.post("/calls", json=call, headers=auth),
                lambda: post_webhook(stack, delivery),  # not stored: Bolna must retry it
            ]
            for write in writes:
                refused = await answered_within(write(), FAIL_FAST_SECONDS)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"] == "service_unavailable"
                assert "database" in refused.json()["detail"]
            assert (await stack.sim.get("/_sim/requests")).json() == []  # nobody dialed

            await relay.restore()
            healthy = await eventually(
                lambda: stack.api.get("/health"),
                lambda r: r.status_code == 200,
                timeout=RECOVERY_SECONDS,
                interval=0.1,
            )
            assert healthy.json()["workers"]["webhook_retry"]["running"] is True
            added = await stack.api.post("/contacts", json=contact, headers=auth)
            assert added.status_code == 201, added.text
            placed = await stack.api.post("/calls", json=call, headers=auth)
            assert placed.status_code == 201, placed.text
            completed = await wait_for_call(stack, token, placed.json()["id"])
            assert completed["credits_charged"] > 0
            redelivered = await post_webhook(stack, delivery)
            assert redelivered.status_code == 202, redelivered.text  # stored this time
            await wait_sim_idle(stack)
