from __future__ import annotations

import pytest

from tests.conftest import Stack
from tests.helpers import make_agent, make_contact


async def test_agents_are_created_and_listed_per_user(stack: Stack):
    alice, bob = stack.tokens["alice"], stack.tokens["bob"]
    agent_id = await make_agent(stack, alice, "Collections")
    listed = (await stack.api.get("/agents", headers=stack.auth(alice))).json()
    assert [(a["id"], a["name"]) for a in listed] == [(agent_id, "Collections")]
    assert (await stack.api.get("/agents", headers=stack.auth(bob))).json() == []


@pytest.mark.parametrize("body", [{}, {"name": "x"}, {"name": "", "bolna_agent_id": "a"}])
async def test_bad_agent_bodies_are_422(stack: Stack, body):
    response = await stack.api.post("/agents", json=body, headers=stack.auth(stack.tokens["alice"]))
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_contacts_normalise_e164_and_belong_to_their_user(stack: Stack):
    alice, bob = stack.tokens["alice"], stack.tokens["bob"]
    await make_contact(stack, alice, phone="+91 98765-43210")
    listed = (await stack.api.get("/contacts", headers=stack.auth(alice))).json()
    assert listed[0]["phone_number"] == "+919876543210"
    assert (await stack.api.get("/contacts", headers=stack.auth(bob))).json() == []


@pytest.mark.parametrize(
    "phone", ["9876543210", "+0123456789", "+12", "phone", "+1234567890123456"]
)
async def test_bad_phone_numbers_are_422_naming_the_field(stack: Stack, phone):
    response = await stack.api.post(
        "/contacts",
        json={"name": "X", "phone_number": phone},
        headers=stack.auth(stack.tokens["alice"]),
    )
    assert response.status_code == 422
    assert "phone_number" in response.json()["detail"]


async def test_unknown_route_is_404_in_the_error_format(stack: Stack):
    response = await stack.api.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
