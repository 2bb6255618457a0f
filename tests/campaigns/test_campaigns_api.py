"""The campaigns API: creation and its validation, ownership, state changes, big uploads."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.campaigns.conftest import (
    action,
    create_campaign,
    get_campaign,
    inline_contacts,
    make_contacts,
)
from tests.conftest import Stack
from tests.helpers import make_agent


async def post_campaign(stack: Stack, token: str, body: dict[str, Any]) -> Any:
    return await stack.api.post("/campaigns", json=body, headers=stack.auth(token))


async def test_create_answers_the_campaign_with_its_settings(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    contact_ids = await make_contacts(cstack, token, 2)
    created = await create_campaign(
        cstack,
        token,
        name="  Renewals  ",
        agent_id=agent_id,
        contact_ids=contact_ids,
        contacts=[{"name": "Walk-in", "phone_number": "+44 20 7946 0958"}],
        max_concurrency=3,
        schedule={
            "start_at": "2031-01-02T09:00:00+05:30",
            "daily_window": {"start": "9:00", "end": "18:30", "timezone": "Asia/Kolkata"},
        },
        retry={"max_attempts": 3, "on": ["busy"], "backoff_seconds": 60},
    )
    assert created["name"] == "Renewals"
    assert created["status"] == "draft"
    assert created["total_items"] == 3
    assert created["progress"]["pending"] == 3
    assert created["max_concurrency"] == 3
    assert created["schedule"] == {
        "start_at": "2031-01-02T03:30:00",
        "daily_window": {"start": "09:00", "end": "18:30", "timezone": "Asia/Kolkata"},
    }
    assert created["retry"] == {"max_attempts": 3, "on": ["busy"], "backoff_seconds": 60}
    assert await get_campaign(cstack, token, created["id"]) == created

    items = (
        await cstack.api.get(f"/campaigns/{created['id']}/items", headers=cstack.auth(token))
    ).json()["items"]
    assert [i["contact_id"] for i in items] == [*contact_ids, None]
    assert items[-1]["phone_number"] == "+442079460958"
    assert {i["state"] for i in items} == {"pending"}


async def test_defaults_and_duplicate_numbers_called_once(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    [contact_id] = await make_contacts(cstack, token, 1, prefix="+9199999")
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contact_ids=[contact_id, contact_id],
        contacts=[
            {"name": "Same as the contact", "phone_number": "+919999900000"},
            {"name": "New", "phone_number": "+919999900001"},
            {"name": "New again", "phone_number": "+91 99999 00001"},
        ],
    )
    assert created["total_items"] == 2
    assert created["duplicates_skipped"] == 3
    assert created["max_concurrency"] == 2
    assert created["retry"] == {
        "max_attempts": 2,
        "on": ["no-answer", "busy", "failed"],
        "backoff_seconds": 300,
    }
    assert created["schedule"] == {"start_at": None, "daily_window": None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contacts": []}, "contacts"),
        ({}, "contacts"),
        ({"contacts": [{"name": "x", "phone_number": "12345"}]}, "contacts[0].phone_number"),
        (
            {"contacts": [*inline_contacts(17), {"name": "Bad", "phone_number": "+0123"}]},
            "contacts[17].phone_number",
        ),
        (
            {"contacts": inline_contacts(1), "max_concurrency": 0},
            "max_concurrency",
        ),
        (
            {
                "contacts": inline_contacts(1),
                "schedule": {
                    "daily_window": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}
                },
            },
            "schedule.daily_window.timezone",
        ),
        (
            {
                "contacts": inline_contacts(1),
                "schedule": {"daily_window": {"start": "25:00", "end": "17:00", "timezone": "UTC"}},
            },
            "schedule.daily_window.start",
        ),
        (
            {"contacts": inline_contacts(1), "retry": {"on": ["voicemail"]}},
            "retry.on",
        ),
        ({"contacts": inline_contacts(1), "contact_id": 3}, "contact_id"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field_and_create_nothing(
    cstack: Stack, body: dict[str, Any], field: str
) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    response = await post_campaign(cstack, token, {"name": "Bad", "agent_id": agent_id, **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in error["detail"], error
    listing = (await cstack.api.get("/campaigns", headers=cstack.auth(token))).json()
    assert listing["items"] == []


async def test_many_bad_contacts_are_reported_by_index_and_counted(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    contacts = inline_contacts(50)
    for index in range(0, 50, 4):
        contacts[index] = {"name": "x", "phone_number": "not a number"}
    response = await post_campaign(
        cstack, token, {"name": "Bad", "agent_id": agent_id, "contacts": contacts}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("13 contacts are invalid: contacts[0].phone_number")
    assert "contacts[36].phone_number" in detail
    assert "contacts[40]" not in detail and "and 3 more" in detail


async def test_unknown_agent_or_contacts_are_404(cstack: Stack) -> None:
    alice, bob = cstack.tokens["alice"], cstack.tokens["bob"]
    agent_id = await make_agent(cstack, alice)
    [own] = await make_contacts(cstack, alice, 1)
    [bobs] = await make_contacts(cstack, bob, 1)
    bobs_agent = await make_agent(cstack, bob)

    response = await post_campaign(
        cstack, alice, {"name": "x", "agent_id": bobs_agent, "contact_ids": [own]}
    )
    assert response.status_code == 404
    assert f"Agent {bobs_agent}" in response.json()["detail"]

    response = await post_campaign(
        cstack, alice, {"name": "x", "agent_id": agent_id, "contact_ids": [own, bobs, 999]}
    )
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert f"contact_ids[1] ({bobs})" in detail and "contact_ids[2] (999)" in detail
    assert "contact_ids[0] " not in detail
    listing = (await cstack.api.get("/campaigns", headers=cstack.auth(alice))).json()
    assert listing["items"] == []


async def test_another_users_campaign_is_404_everywhere(cstack: Stack) -> None:
    alice, bob = cstack.tokens["alice"], cstack.tokens["bob"]
    agent_id = await make_agent(cstack, alice)
    created = await create_campaign(cstack, alice, agent_id=agent_id, contacts=inline_contacts(1))
    for method, path in [
        ("GET", f"/campaigns/{created['id']}"),
        ("GET", f"/campaigns/{created['id']}/items"),
        ("POST", f"/campaigns/{created['id']}/start"),
        ("POST", f"/campaigns/{created['id']}/pause"),
        ("POST", f"/campaigns/{created['id']}/resume"),
        ("POST", f"/campaigns/{created['id']}/cancel"),
    ]:
        response = await cstack.api.request(method, path, headers=cstack.auth(bob))
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"
    assert (await cstack.api.get("/campaigns", headers=cstack.auth(bob))).json()["items"] == []
    assert (await get_campaign(cstack, alice, created["id"]))["status"] == "draft"
    unauthenticated = await cstack.api.get("/campaigns")
    assert unauthenticated.status_code == 401


async def test_state_changes_that_make_no_sense_are_409(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    created = await create_campaign(
        cstack,
        token,
        agent_id=agent_id,
        contacts=inline_contacts(1),
        schedule={"start_at": "2099-01-01T00:00:00Z"},
    )
    campaign_id = created["id"]
    for verb in ("pause", "resume"):
        response = await cstack.api.post(
            f"/campaigns/{campaign_id}/{verb}", headers=cstack.auth(token)
        )
        assert response.status_code == 409, verb
        assert response.json()["error"] == "conflict"
    assert (await action(cstack, token, campaign_id, "start"))["status"] == "scheduled"
    assert (await action(cstack, token, campaign_id, "start"))["status"] == "scheduled"
    paused = await action(cstack, token, campaign_id, "pause")
    assert (paused["status"], paused["pause_reason"]) == ("paused", "user_requested")
    assert (await action(cstack, token, campaign_id, "resume"))["status"] == "scheduled"
    canceled = await action(cstack, token, campaign_id, "cancel")
    assert canceled["status"] == "canceled"
    assert canceled["progress"]["canceled"] == 1
    assert (await action(cstack, token, campaign_id, "cancel"))["status"] == "canceled"
    response = await cstack.api.post(f"/campaigns/{campaign_id}/start", headers=cstack.auth(token))
    assert response.status_code == 409


async def test_list_is_newest_first_and_pages(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    ids = [
        (await create_campaign(cstack, token, agent_id=agent_id, contacts=inline_contacts(1)))["id"]
        for _ in range(3)
    ]
    first = (
        await cstack.api.get("/campaigns", params={"limit": 2}, headers=cstack.auth(token))
    ).json()
    assert [c["id"] for c in first["items"]] == ids[::-1][:2]
    second = (
        await cstack.api.get(
            "/campaigns",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=cstack.auth(token),
        )
    ).json()
    assert [c["id"] for c in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None


async def test_a_campaign_of_100000_contacts_is_created_in_one_request(cstack: Stack) -> None:
    token = cstack.tokens["alice"]
    agent_id = await make_agent(cstack, token)
    contacts = [{"name": f"Customer {n}", "phone_number": f"+1415{n:07d}"} for n in range(100_000)]
    began = time.perf_counter()
    response = await post_campaign(
        cstack, token, {"name": "Everyone", "agent_id": agent_id, "contacts": contacts}
    )
    elapsed = time.perf_counter() - began
    assert response.status_code == 201, response.text[:500]
    campaign_id = response.json()["id"]
    began = time.perf_counter()
    shown = await get_campaign(cstack, token, campaign_id)
    progress_elapsed = time.perf_counter() - began
    print(f"100k create: {elapsed:.2f}s, progress read: {progress_elapsed * 1000:.0f}ms")
    assert shown["total_items"] == 100_000
    assert shown["progress"]["pending"] == 100_000
    assert elapsed < 30, f"creating 100,000 items took {elapsed:.1f}s"

    too_many = await post_campaign(
        cstack,
        token,
        {"name": "Too many", "agent_id": agent_id, "contacts": [*contacts, contacts[0]]},
    )
    assert too_many.status_code == 422
    assert "contacts" in too_many.json()["detail"]
