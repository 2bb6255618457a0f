"""Small test helpers: bounded polling and common setup through the real API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.conftest import Stack

T = TypeVar("T")
AGENT_UUID = "6f1c2c1e-1111-4111-8111-111111111111"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> T:
    """Poll `probe` until `accept` holds; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not accept(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


async def make_agent(stack: Stack, token: str, name: str = "Sales") -> int:
    response = await stack.api.post(
        "/agents", json={"name": name, "bolna_agent_id": AGENT_UUID}, headers=stack.auth(token)
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def make_contact(
    stack: Stack, token: str, phone: str = "+919876543210", name: str = "Asha"
) -> int:
    response = await stack.api.post(
        "/contacts", json={"name": name, "phone_number": phone}, headers=stack.auth(token)
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def get_call(stack: Stack, token: str, call_id: int) -> dict[str, Any]:
    response = await stack.api.get(f"/calls/{call_id}", headers=stack.auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_call(
    stack: Stack, token: str, call_id: int, status: str = "completed", timeout: float = 10.0
) -> dict[str, Any]:
    return await eventually(
        lambda: get_call(stack, token, call_id), lambda c: c["status"] == status, timeout=timeout
    )


async def sim_finished(stack: Stack) -> bool:
    calls = (await stack.sim.get("/_sim/calls")).json()
    return all(c.get("finished_at") for c in calls)


async def wait_sim_idle(stack: Stack, timeout: float = 10.0) -> None:
    async def probe() -> bool:
        return await sim_finished(stack)

    await eventually(probe, bool, timeout=timeout)
