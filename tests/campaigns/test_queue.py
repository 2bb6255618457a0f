"""The queue across processes: restarts, dead processes' leases, two processors sharing work."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.auth.service import decode_token
from app.campaigns.models import CampaignItem
from app.campaigns.processor import CampaignProcessor, ClaimedItem
from app.db import utcnow
from app.models import Call
from tests.campaigns.conftest import (
    action,
    api_instance,
    campaign_items,
    campaign_settings,
    campaign_stack,
    create_campaign,
    get_campaign,
    inline_contacts,
    max_overlap,
    phones_dialed,
    shared_simulator,
    sim_calls,
    wait_campaign,
)
from tests.conftest import Stack, create_user_token
from tests.helpers import eventually, make_agent, wait_sim_idle
from tests.pg import postgres_param


async def test_a_restart_mid_campaign_finishes_it_without_dialing_anyone_twice(
    database_url: str,
) -> None:
    settings = campaign_settings(database_url)
    async with shared_simulator(settings, step_delay_ms=30) as sim:
        async with api_instance(settings, sim) as first:
            stack = first.stack
            token = await create_user_token(settings, "alice@example.com", 1000)
            agent_id = await make_agent(stack, token)
            created = await create_campaign(
                stack, token, agent_id=agent_id, contacts=inline_contacts(8), max_concurrency=2
            )
            await action(stack, token, created["id"], "start")
            midway = await eventually(
                lambda: get_campaign(stack, token, created["id"]),
                lambda c: c["progress"]["completed"] >= 2,
            )
            assert midway["progress"]["pending"] >= 2
        placed_before = len(first.bolna.placed)

        async with api_instance(settings, sim) as second:
            done = await wait_campaign(second.stack, token, created["id"], "completed")
            assert done["progress"]["completed"] == 8
            await wait_sim_idle(second.stack)
            phones = phones_dialed(await sim_calls(second.stack))
        assert len(phones) == 8 and len(set(phones)) == 8
        assert 2 <= placed_before < 8
        assert len(second.bolna.placed) == 8 - placed_before


async def _user_id(token: str, stack: Stack) -> int:
    return decode_token(token, stack.settings).user_id


async def test_items_of_a_dead_process_are_reclaimed_once_its_lease_expires(
    sqlite_url: str,
) -> None:
    settings = campaign_settings(sqlite_url, campaign_lease_seconds=30.0)
    async with campaign_stack(settings, step_delay_ms=10) as stack:
        token = stack.tokens["alice"]
        agent_id = await make_agent(stack, token)
        created = await create_campaign(
            stack,
            token,
            agent_id=agent_id,
            contacts=inline_contacts(4),
            max_concurrency=4,
            retry={"max_attempts": 2, "backoff_seconds": 0},
        )
        campaign_id = created["id"]
        never_placed, placed, asking_bolna, untouched = await campaign_items(
            stack, token, campaign_id
        )
        user_id = await _user_id(token, stack)
        long_ago = utcnow() - timedelta(minutes=10)
        async with stack.app.state.sessionmaker() as session, session.begin():
            # What a process that died mid-dial leaves behind: a call that reached Bolna
            # (execution id stored), and one whose request to Bolna was in flight.
            reached = Call(
                user_id=user_id,
                agent_id=agent_id,
                phone_number=placed["phone_number"],
                status="ringing",
                call_source="campaign",
                campaign_id=campaign_id,
                campaign_item_id=placed["id"],
                execution_id="exec-of-a-dead-process",
            )
            asking = Call(
                user_id=user_id,
                agent_id=agent_id,
                phone_number=asking_bolna["phone_number"],
                status="queued",
                call_source="campaign",
                campaign_id=campaign_id,
                campaign_item_id=asking_bolna["id"],
            )
            session.add_all([reached, asking])
            await session.execute(
                update(CampaignItem)
                .where(CampaignItem.id.in_([never_placed["id"], placed["id"], asking_bolna["id"]]))
                .values(
                    state="dialing",
                    attempts=1,
                    dialed_at=long_ago,
                    lease_owner="dead-host:1:0",
                    lease_expires_at=utcnow() + timedelta(seconds=3),
                )
            )
        await action(stack, token, campaign_id, "start")

        # The untouched item is dialed at once; the dead process's wait for their lease.
        await eventually(
            lambda: campaign_items(stack, token, campaign_id),
            lambda items: items[3]["state"] == "completed",
        )
        items = await campaign_items(stack, token, campaign_id)
        assert [i["state"] for i in items[:3]] == ["dialing"] * 3

        items = await eventually(
            lambda: campaign_items(stack, token, campaign_id),
            lambda items: items[0]["state"] == "completed" and items[2]["state"] == "completed",
        )
        released, adopted, retried, _ = items
        assert released["attempts"] == 1  # never placed: the lost attempt did not count
        assert (adopted["state"], adopted["call_id"]) == ("in_progress", reached.id)
        assert retried["attempts"] == 2  # the abandoned dial counted
        async with stack.app.state.sessionmaker() as session:
            abandoned = await session.get(Call, asking.id)
            assert abandoned is not None
            assert abandoned.status == "failed"
            assert "abandoned" in (abandoned.failure_reason or "")
        await wait_sim_idle(stack)
        dialed = Counter(phones_dialed(await sim_calls(stack)))
        # Exactly once each, and never the number whose call had reached Bolna.
        assert dialed == {
            never_placed["phone_number"]: 1,
            asking_bolna["phone_number"]: 1,
            untouched["phone_number"]: 1,
        }
        assert (await get_campaign(stack, token, campaign_id))["status"] == "running"


async def test_credits_gone_between_claim_and_dial_release_the_item_and_pause(
    sqlite_url: str,
) -> None:
    settings = campaign_settings(sqlite_url)
    async with campaign_stack(settings) as stack:
        token = await create_user_token(settings, "broke@example.com", 0)
        agent_id = await make_agent(stack, token)
        created = await create_campaign(
            stack, token, agent_id=agent_id, contacts=inline_contacts(1)
        )
        [item] = await campaign_items(stack, token, created["id"])
        async with stack.app.state.sessionmaker() as session, session.begin():
            # As if claimed a moment ago, while the balance still covered a call.
            await session.execute(
                update(CampaignItem)
                .where(CampaignItem.id == item["id"])
                .values(
                    state="dialing",
                    attempts=1,
                    dialed_at=utcnow(),
                    lease_owner="test-processor",
                    lease_expires_at=utcnow() + timedelta(minutes=5),
                )
            )
        await action(stack, token, created["id"], "start")
        processor = CampaignProcessor(
            sessionmaker=stack.app.state.sessionmaker,
            bolna=stack.app.state.bolna,
            settings=settings,
            owner="test-processor",
        )
        await processor.dispatch(
            ClaimedItem(
                item_id=item["id"],
                campaign_id=created["id"],
                user_id=await _user_id(token, stack),
                agent_id=agent_id,
                phone_number=item["phone_number"],
                attempt=1,
            )
        )
        campaign = await get_campaign(stack, token, created["id"])
        assert (campaign["status"], campaign["pause_reason"]) == ("paused", "insufficient_credits")
        [after] = await campaign_items(stack, token, created["id"])
        assert (after["state"], after["attempts"]) == ("pending", 0)
        assert after["last_outcome"] == "insufficient_credits"
        assert await sim_calls(stack) == []


@pytest.mark.parametrize("database_url", [postgres_param()], indirect=True)
async def test_two_processors_share_one_campaign_without_double_dials(database_url: str) -> None:
    settings = campaign_settings(database_url, campaign_tick_seconds=0.01)
    async with (
        shared_simulator(settings, step_delay_ms=15) as sim,
        api_instance(settings, sim) as one,
        api_instance(settings, sim, receives_webhooks=False) as two,
    ):
        stack = one.stack
        token = await create_user_token(settings, "alice@example.com", 100_000)
        agent_id = await make_agent(stack, token)
        created = await create_campaign(
            stack, token, agent_id=agent_id, contacts=inline_contacts(40), max_concurrency=4
        )
        await action(two.stack, token, created["id"], "start")
        done = await wait_campaign(stack, token, created["id"], "completed", timeout=60)
        assert done["progress"]["completed"] == 40
        await wait_sim_idle(stack)
        calls = await sim_calls(stack)
        phones = phones_dialed(calls)
        assert len(phones) == 40 and len(set(phones)) == 40
        assert max_overlap(calls) <= 4
        assert one.bolna.placed and two.bolna.placed, "both processors should have dialed"
        assert len(one.bolna.placed) + len(two.bolna.placed) == 40
        async with stack.app.state.sessionmaker() as session:
            per_item = Counter(
                await session.scalars(
                    select(Call.campaign_item_id).where(Call.campaign_id == created["id"])
                )
            )
        assert set(per_item.values()) == {1}
