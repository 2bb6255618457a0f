from __future__ import annotations

import pytest

from tests.conftest import Stack
from tests.helpers import (
    eventually,
    get_call,
    make_agent,
    make_contact,
    wait_for_call,
    wait_sim_idle,
)


async def balance(stack: Stack, token: str) -> dict:
    response = await stack.api.get("/credits", headers=stack.auth(token))
    assert response.status_code == 200
    return response.json()


async def test_call_to_contact_completes_with_transcript_and_one_charge(stack: Stack):
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    contact_id = await make_contact(stack, token)

    response = await stack.api.post(
        "/calls", json={"agent_id": agent_id, "contact_id": contact_id}, headers=stack.auth(token)
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["execution_id"]
    assert created["status"] == "queued"

    call = await wait_for_call(stack, token, created["id"])
    assert call["transcript"] and "assistant:" in call["transcript"]
    assert call["recording_url"]
    assert call["duration_seconds"] > 0
    expected_charge = -(-int(call["duration_seconds"] * 10) // 60)  # ceil(duration * 10 / 60)
    assert call["credits_charged"] >= 1
    await wait_sim_idle(stack)
    credits = await balance(stack, token)
    charges = [e for e in credits["ledger"] if e["reason"] == "call"]
    assert len(charges) == 1
    assert charges[0]["amount"] == -call["credits_charged"]
    assert credits["balance"] == 1000 - call["credits_charged"]
    assert abs(call["credits_charged"] - expected_charge) <= 1


async def test_call_to_raw_phone_number(stack: Stack):
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    response = await stack.api.post(
        "/calls",
        json={"agent_id": agent_id, "phone_number": "+14155550123"},
        headers=stack.auth(token),
    )
    assert response.status_code == 201
    calls = (await stack.sim.get("/_sim/calls")).json()
    assert calls[-1]["recipient_phone_number"] == "+14155550123"


async def test_duplicate_and_out_of_order_webhooks_charge_exactly_once(stack: Stack):
    token = stack.tokens["alice"]
    await stack.faults(webhooks={"duplicate": True, "out_of_order": True})
    agent_id = await make_agent(stack, token)
    contact_id = await make_contact(stack, token)
    created = (
        await stack.api.post(
            "/calls",
            json={"agent_id": agent_id, "contact_id": contact_id},
            headers=stack.auth(token),
        )
    ).json()
    await wait_for_call(stack, token, created["id"])
    await wait_sim_idle(stack)
    call = await get_call(stack, token, created["id"])
    assert call["status"] == "completed"  # the late "ringing" did not overwrite it
    credits = await balance(stack, token)
    assert [e["call_id"] for e in credits["ledger"] if e["reason"] == "call"] == [created["id"]]
    assert credits["balance"] == 1000 - call["credits_charged"]


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_unanswered_outcomes_end_the_call_without_charge(stack: Stack, outcome: str):
    token = stack.tokens["alice"]
    await stack.faults(webhooks={"outcome": outcome})
    agent_id = await make_agent(stack, token)
    created = (
        await stack.api.post(
            "/calls",
            json={"agent_id": agent_id, "phone_number": "+14155550123"},
            headers=stack.auth(token),
        )
    ).json()
    call = await wait_for_call(stack, token, created["id"], status=outcome)
    assert call["credits_charged"] == 0
    assert call["failure_reason"]
    assert (await balance(stack, token))["balance"] == 1000


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("500", 502, "bolna_server_error"),
        ("503", 502, "bolna_server_error"),
        ("429", 503, "bolna_rate_limited"),
        ("401", 502, "bolna_unauthorized"),
        ("timeout", 504, "bolna_timeout"),
    ],
)
async def test_provider_failures_answer_5xx_and_leave_a_failed_call(
    stack: Stack, mode: str, status: int, code: str
):
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    call_fault: dict = {"mode": mode}
    if mode == "timeout":
        call_fault["timeout_s"] = 3  # longer than the client's 0.5 s read timeout
    await stack.faults(call=call_fault)
    response = await stack.api.post(
        "/calls",
        json={"agent_id": agent_id, "phone_number": "+14155550123"},
        headers=stack.auth(token),
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["detail"]
    listed = (await stack.api.get("/calls", headers=stack.auth(token))).json()["items"]
    assert len(listed) == 1  # the row exists: no orphan, no lost record
    assert listed[0]["status"] == "failed"
    assert listed[0]["failure_reason"]
    assert listed[0]["execution_id"] is None


async def test_transient_provider_failure_is_retried_transparently(stack: Stack):
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    await stack.faults(call={"mode": "503", "count": 2})
    response = await stack.api.post(
        "/calls",
        json={"agent_id": agent_id, "phone_number": "+14155550123"},
        headers=stack.auth(token),
    )
    assert response.status_code == 201
    requests = (await stack.sim.get("/_sim/requests")).json()
    assert [r["status_code"] for r in requests] == [503, 503, 200]


async def test_insufficient_credits_is_402_and_places_nothing(settings):
    from tests.conftest import create_user_token, running_stack

    async with running_stack(settings) as stack:
        token = await create_user_token(settings, "poor@example.com", 5)
        agent_id = await make_agent(stack, token)
        response = await stack.api.post(
            "/calls",
            json={"agent_id": agent_id, "phone_number": "+14155550123"},
            headers=stack.auth(token),
        )
        assert response.status_code == 402
        assert response.json()["error"] == "insufficient_credits"
        assert "5 credits" in response.json()["detail"]
        assert (await stack.sim.get("/_sim/calls")).json() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"agent_id": 1},
        {"agent_id": 1, "contact_id": 1, "phone_number": "+14155550123"},
        {"agent_id": "x", "phone_number": "+14155550123"},
    ],
)
async def test_bad_call_bodies_are_422_with_a_sentence(stack: Stack, body):
    response = await stack.api.post("/calls", json=body, headers=stack.auth(stack.tokens["alice"]))
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert len(response.json()["detail"]) > 5


async def test_bad_phone_number_is_422(stack: Stack):
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    response = await stack.api.post(
        "/calls", json={"agent_id": agent_id, "phone_number": "12345"}, headers=stack.auth(token)
    )
    assert response.status_code == 422
    assert "E.164" in response.json()["detail"]


async def test_other_users_resources_answer_404(stack: Stack):
    alice, bob = stack.tokens["alice"], stack.tokens["bob"]
    agent_id = await make_agent(stack, alice)
    contact_id = await make_contact(stack, alice)
    created = (
        await stack.api.post(
            "/calls",
            json={"agent_id": agent_id, "contact_id": contact_id},
            headers=stack.auth(alice),
        )
    ).json()
    assert (
        await stack.api.get(f"/calls/{created['id']}", headers=stack.auth(bob))
    ).status_code == 404
    bob_agent = await make_agent(stack, bob)
    uses_alice_agent = await stack.api.post(
        "/calls",
        json={"agent_id": agent_id, "phone_number": "+14155550123"},
        headers=stack.auth(bob),
    )
    assert uses_alice_agent.status_code == 404
    uses_alice_contact = await stack.api.post(
        "/calls", json={"agent_id": bob_agent, "contact_id": contact_id}, headers=stack.auth(bob)
    )
    assert uses_alice_contact.status_code == 404
    assert (await stack.api.get("/calls", headers=stack.auth(bob))).json()["items"] == []


async def test_list_calls_pages_newest_first_and_filters_by_status(stack: Stack):
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    ids = []
    for _ in range(5):
        response = await stack.api.post(
            "/calls",
            json={"agent_id": agent_id, "phone_number": "+14155550123"},
            headers=stack.auth(token),
        )
        ids.append(response.json()["id"])
    await eventually(
        lambda: stack.api.get("/calls?status=completed&limit=200", headers=stack.auth(token)),
        lambda r: len(r.json()["items"]) == 5,
    )
    first = (await stack.api.get("/calls?limit=2", headers=stack.auth(token))).json()
    assert [c["id"] for c in first["items"]] == ids[::-1][:2]
    second = (
        await stack.api.get(
            f"/calls?limit=2&cursor={first['next_cursor']}", headers=stack.auth(token)
        )
    ).json()
    third = (
        await stack.api.get(
            f"/calls?limit=2&cursor={second['next_cursor']}", headers=stack.auth(token)
        )
    ).json()
    seen = [c["id"] for page in (first, second, third) for c in page["items"]]
    assert seen == ids[::-1]
    assert third["next_cursor"] is None
    bad = await stack.api.get("/calls?cursor=garbage", headers=stack.auth(token))
    assert bad.status_code == 422
    assert (await stack.api.get("/calls?status=busy", headers=stack.auth(token))).json()[
        "items"
    ] == []
