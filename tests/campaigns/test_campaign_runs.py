"""Campaigns running against the simulator: concurrency, retries, credits, faults, pause and
cancel, schedules and windows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from app.auth.service import decode_token
from app.credits.service import grant
from tests.campaigns.conftest import (
    action,
    campaign_items,
    campaign_settings,
    campaign_stack,
    create_campaign,
    get_campaign,
    inline_contacts,
    make_contacts,
    max_overlap,
    phones_dialed,
    sim_calls,
    wait_campaign,
)
from tests.conftest import Stack, create_user_token
from tests.helpers import eventually, make_agent, wait_sim_idle

NO_WAIT_RETRY = {"max_attempts": 2, "backoff_seconds": 0}


async def test_five_contacts_complete_with_never_more_than_two_calls_in_flight(
    database_url: str,
) -> None:
    settings = campaign_settings(database_url)
    async with campaign_stack(settings, step_delay_ms=20) as stack:
        token = stack.tokens["alice"]
        agent_id = await make_agent(stack, token)
        contact_ids = await make_contacts(stack, token, 5)
        created = await create_campaign(
            stack, token, agent_id=agent_id, contact_ids=contact_ids, max_concurrency=2
        )
        assert created["status"] == "draft"
        assert created["progress"]["pending"] == 5
        assert (await action(stack, token, created["id"], "start"))["status"] == "running"

        done = await wait_campaign(stack, token, created["id"], "completed")
        assert done["progress"] == {
            "pending": 0,
            "dialing": 0,
            "in_progress": 0,
            "completed": 5,
            "failed": 0,
            "canceled": 0,
        }
        assert done["finished_at"]
        await wait_sim_idle(stack)
        calls = await sim_calls(stack)
        assert len(calls) == 5
        assert max_overlap(calls) == 2  # concurrency used, never exceeded

        api_calls = (await stack.api.get("/calls", headers=stack.auth(token))).json()["items"]
        assert {c["call_source"] for c in api_calls} == {"campaign"}
        assert {c["campaign_id"] for c in api_calls} == {created["id"]}
        assert all(c["status"] == "completed" and c["credits_charged"] > 0 for c in api_calls)
        items = await campaign_items(stack, token, created["id"])
        assert sorted(i["call_id"] for i in items) == sorted(c["id"] for c in api_calls)


async def test_busy_and_no_answer_are_retried_then_failed_with_a_reason(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    # One call at a time, so outcomes map to contacts in dial order: A, B, C, then A again.
    await cstack.faults(webhooks={"outcomes": ["busy", "no-answer", "completed", "busy"]})
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contacts=inline_contacts(3),
        max_concurrency=1,
        retry={"max_attempts": 2, "on": ["busy"], "backoff_seconds": 0},
    )
    await action(cstack, token, created["id"], "start")
    done = await wait_campaign(cstack, token, created["id"], "completed")
    assert done["progress"]["completed"] == 1
    assert done["progress"]["failed"] == 2

    a, b, c = await campaign_items(cstack, token, created["id"])
    assert (a["state"], a["attempts"], a["last_outcome"]) == ("failed", 2, "busy")
    assert a["failure_reason"] == "busy after 2 attempts"
    assert (b["state"], b["attempts"]) == ("failed", 1)
    assert b["failure_reason"] == "call ended no-answer (not retried)"
    assert (c["state"], c["attempts"]) == ("completed", 1)
    await wait_sim_idle(cstack)
    dialed = Counter(phones_dialed(await sim_calls(cstack)))
    assert dialed == {a["phone_number"]: 2, b["phone_number"]: 1, c["phone_number"]: 1}


async def test_running_out_of_credits_pauses_until_resumed_after_a_top_up(
    sqlite_url: str,
) -> None:
    settings = campaign_settings(sqlite_url)  # a call needs 10 credits (one minute)
    async with campaign_stack(settings) as stack:
        token = await create_user_token(settings, "poor@example.com", 10)
        agent_id = await make_agent(stack, token)
        created = await create_campaign(
            stack, token, agent_id=agent_id, contacts=inline_contacts(3), max_concurrency=1
        )
        await action(stack, token, created["id"], "start")
        # The first call costs at least 4 credits: the balance cannot cover a second one.
        paused = await wait_campaign(stack, token, created["id"], "paused")
        assert paused["pause_reason"] == "insufficient_credits"
        await eventually(
            lambda: get_campaign(stack, token, created["id"]),
            lambda c: c["progress"]["completed"] == 1 and c["progress"]["pending"] == 2,
        )

        refused = await stack.api.post(
            f"/campaigns/{created['id']}/resume", headers=stack.auth(token)
        )
        assert refused.status_code == 402
        assert refused.json()["error"] == "insufficient_credits"
        assert (await get_campaign(stack, token, created["id"]))["status"] == "paused"

        user_id = decode_token(token, settings).user_id
        async with stack.app.state.sessionmaker() as session, session.begin():
            await grant(session, user_id, 1000, reason="top-up", idempotency_key="top-up-1")
        resumed = await action(stack, token, created["id"], "resume")
        assert (resumed["status"], resumed["pause_reason"]) == ("running", None)
        done = await wait_campaign(stack, token, created["id"], "completed")
        assert done["progress"]["completed"] == 3
        await wait_sim_idle(stack)
        phones = phones_dialed(await sim_calls(stack))
        assert len(phones) == 3 and len(set(phones)) == 3


async def test_bolna_503_is_retried_per_policy_without_stalling_the_others(
    cstack: Stack,
) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    # The client tries 3 times (BOLNA_MAX_RETRIES=2): the first dial fails, its retry works.
    await cstack.faults(call={"mode": "503", "count": 3})
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contacts=inline_contacts(3),
        max_concurrency=1,
        retry=NO_WAIT_RETRY,
    )
    await action(cstack, token, created["id"], "start")
    done = await wait_campaign(cstack, token, created["id"], "completed")
    assert done["progress"]["completed"] == 3
    items = await campaign_items(cstack, token, created["id"])
    assert [i["attempts"] for i in items] == [2, 1, 1]
    assert items[0]["last_outcome"] == "completed"
    requests = (await cstack.sim.get("/_sim/requests")).json()
    assert [r["status_code"] for r in requests[:3]] == [503, 503, 503]
    await wait_sim_idle(cstack)
    phones = phones_dialed(await sim_calls(cstack))
    assert len(phones) == 3 and len(set(phones)) == 3  # each dialed once, the failed dial too


async def test_a_hanging_bolna_request_does_not_hold_up_other_items(sqlite_url: str) -> None:
    settings = campaign_settings(sqlite_url, bolna_max_retries=0, bolna_read_timeout_seconds=4.0)
    async with campaign_stack(settings, step_delay_ms=10) as stack:
        token = stack.tokens["alice"]
        agent_id = await make_agent(stack, token)
        await stack.faults(call={"mode": "timeout", "count": 1})
        created = await create_campaign(
            stack,
            token,
            agent_id=agent_id,
            contacts=inline_contacts(3),
            max_concurrency=2,
            retry=NO_WAIT_RETRY,
        )
        await action(stack, token, created["id"], "start")
        # While one dial hangs, the other slot works through the rest of the campaign.
        meanwhile = await eventually(
            lambda: get_campaign(stack, token, created["id"]),
            lambda c: c["progress"]["completed"] == 2,
            timeout=3.5,  # well within the 4 s the hanging request takes
        )
        assert meanwhile["progress"]["dialing"] == 1
        [hanging] = [
            i for i in await campaign_items(stack, token, created["id"]) if i["state"] == "dialing"
        ]
        assert hanging["attempts"] == 1  # its first dial, still waiting for Bolna
        requests = (await stack.sim.get("/_sim/requests")).json()
        assert requests[0]["fault_mode"] == "timeout"

        await wait_campaign(stack, token, created["id"], "completed")
        items = await campaign_items(stack, token, created["id"])
        assert sorted(i["attempts"] for i in items) == [1, 1, 2]
        assert {i["state"] for i in items} == {"completed"}
        [retried] = [i for i in items if i["attempts"] == 2]
        assert retried["last_outcome"] == "completed"


async def test_pause_mid_dial_settles_calls_in_flight_and_dials_nothing_new(
    cstack: Stack,
) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    await cstack.faults(step_delay_ms=60)
    created = await create_campaign(
        cstack, token, agent_id=agent_id, contacts=inline_contacts(10), max_concurrency=2
    )
    await action(cstack, token, created["id"], "start")
    await eventually(
        lambda: get_campaign(cstack, token, created["id"]),
        lambda c: c["progress"]["in_progress"] >= 1,
    )
    paused = await action(cstack, token, created["id"], "pause")
    assert (paused["status"], paused["pause_reason"]) == ("paused", "user_requested")
    settled = await eventually(
        lambda: get_campaign(cstack, token, created["id"]),
        lambda c: c["progress"]["dialing"] == 0 and c["progress"]["in_progress"] == 0,
    )
    assert settled["progress"]["completed"] + settled["progress"]["pending"] == 10
    assert 1 <= settled["progress"]["completed"] < 10
    await wait_sim_idle(cstack)
    dialed_while_paused = len(await sim_calls(cstack))
    runs = await _runs(cstack)
    await eventually(lambda: _runs(cstack), lambda now: now >= runs + 10, timeout=5)
    assert (await get_campaign(cstack, token, created["id"]))["status"] == "paused"
    assert len(await sim_calls(cstack)) == dialed_while_paused == settled["progress"]["completed"]

    await action(cstack, token, created["id"], "resume")
    done = await wait_campaign(cstack, token, created["id"], "completed")
    assert done["progress"]["completed"] == 10


async def test_cancel_mid_dial_leaves_every_item_definite(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    await cstack.faults(step_delay_ms=60)
    created = await create_campaign(
        cstack, token, agent_id=agent_id, contacts=inline_contacts(10), max_concurrency=2
    )
    await action(cstack, token, created["id"], "start")
    await eventually(
        lambda: get_campaign(cstack, token, created["id"]),
        lambda c: c["progress"]["in_progress"] >= 1,
    )
    canceled = await action(cstack, token, created["id"], "cancel")
    assert canceled["status"] == "canceled"
    assert canceled["progress"]["pending"] == 0
    settled = await eventually(
        lambda: get_campaign(cstack, token, created["id"]),
        lambda c: c["progress"]["dialing"] == 0 and c["progress"]["in_progress"] == 0,
    )
    progress = settled["progress"]
    assert progress["completed"] >= 1 and progress["canceled"] >= 1
    assert progress["completed"] + progress["canceled"] == 10
    assert settled["status"] == "canceled"
    await wait_sim_idle(cstack)
    assert len(await sim_calls(cstack)) == progress["completed"]
    for item in await campaign_items(cstack, token, created["id"]):
        assert item["state"] in ("completed", "canceled")
        if item["state"] == "canceled":
            assert item["failure_reason"] == "campaign canceled"


async def test_start_at_in_the_future_schedules_then_runs(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    start_at = datetime.now(UTC) + timedelta(seconds=1)
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contacts=inline_contacts(2),
        schedule={"start_at": start_at.isoformat()},
    )
    started = await action(cstack, token, created["id"], "start")
    assert started["status"] == "scheduled"
    assert started["started_at"] is None
    assert await sim_calls(cstack) == []
    done = await wait_campaign(cstack, token, created["id"], "completed")
    first_call = min(datetime.fromisoformat(c["received_at"]) for c in await sim_calls(cstack))
    assert first_call >= start_at
    assert datetime.fromisoformat(done["started_at"]).replace(tzinfo=UTC) >= start_at - timedelta(
        milliseconds=5
    )


async def test_outside_its_daily_window_a_campaign_dials_nothing_and_loses_nothing(
    cstack: Stack,
) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    now = datetime.now(UTC)
    window = {
        "start": (now + timedelta(hours=2)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contacts=inline_contacts(3),
        schedule={"daily_window": window},
    )
    started = await action(cstack, token, created["id"], "start")
    assert started["status"] == "running"
    assert started["window_open"] is False
    opens = datetime.fromisoformat(started["next_window_at"]).replace(tzinfo=UTC)
    assert timedelta(hours=1, minutes=58) < opens - now <= timedelta(hours=2)

    processor_runs = cstack.app.state.workers.status()["campaign_processor"]["runs"]
    await eventually(lambda: _runs(cstack), lambda runs: runs >= processor_runs + 10, timeout=5)
    assert await sim_calls(cstack) == []
    still = await get_campaign(cstack, token, created["id"])
    assert still["status"] == "running"
    assert still["progress"]["pending"] == 3


async def _runs(stack: Stack) -> int:
    runs: int = stack.app.state.workers.status()["campaign_processor"]["runs"]
    return runs


async def test_a_window_that_is_open_now_dials_in_the_campaigns_timezone(
    cstack: Stack,
) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    now_kolkata = datetime.now(UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    window = {
        "start": (now_kolkata - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now_kolkata + timedelta(hours=1)).strftime("%H:%M"),
        "timezone": "Asia/Kolkata",
    }
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contacts=inline_contacts(2),
        schedule={"daily_window": window},
    )
    started = await action(cstack, token, created["id"], "start")
    assert started["window_open"] is True
    assert started["next_window_at"] is None
    await wait_campaign(cstack, token, created["id"], "completed")


async def test_calls_in_flight_stay_within_what_the_balance_can_pay_for(sqlite_url: str) -> None:
    settings = campaign_settings(sqlite_url)  # a call needs 10 credits
    async with campaign_stack(settings, step_delay_ms=20) as stack:
        token = await create_user_token(settings, "thrifty@example.com", 25)
        agent_id = await make_agent(stack, token)
        created = await create_campaign(
            stack, token, agent_id=agent_id, contacts=inline_contacts(6), max_concurrency=5
        )
        await action(stack, token, created["id"], "start")
        paused = await wait_campaign(stack, token, created["id"], "paused")
        assert paused["pause_reason"] == "insufficient_credits"
        await wait_sim_idle(stack)
        calls = await sim_calls(stack)
        assert 2 <= len(calls) < 6
        assert max_overlap(calls) == 2  # 25 credits pay for two calls at a time, not five
