"""Webhooks as Bolna really delivers them: repeated, out of order, concurrently, and into a
process that dies halfway. Whatever arrives, a call ends in one final state with one
charge, and every delivery that reached us is stored and eventually applied.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.conftest import make_settings, running_stack
from tests.e2e.loopback import (
    _INHERITED,
    ROOT,
    START_TIMEOUT_SECONDS,
    TELEMETRY_ENV,
    free_port,
    settings_env,
)
from tests.helpers import eventually, get_call
from tests.reliability.crash_after_store import CRASH_EXIT_CODE
from tests.reliability.deliveries import (
    CALL_PRICE,
    CALL_SECONDS,
    SILENT_SIMULATOR_MS,
    STARTING_CREDITS,
    Stored,
    all_settled,
    deliver_at_once,
    place_call,
    read_stored,
    silent_stack,
    webhook_bodies,
)
from tests.webhooks.test_webhooks_api import post_webhook

COPIES = 5
CONCURRENT_DUPLICATES = 20


def assert_one_completion_and_one_charge(stored: Stored, call_id: int) -> None:
    [call] = [c for c in stored.calls if c.id == call_id]
    assert (call.status, call.duration_seconds) == ("completed", CALL_SECONDS)
    assert call.transcript and call.recording_url
    applied = [
        d for d in stored.deliveries if d.state == "processed" and d.bolna_status == "completed"
    ]
    assert len(applied) == 1, [(d.bolna_status, d.state) for d in stored.deliveries]
    assert [(e.call_id, e.amount) for e in stored.charges()] == [(call_id, -CALL_PRICE)]
    assert call.credits_charged == CALL_PRICE


async def test_every_status_five_times_shuffled_and_at_once_ends_in_one_state_and_one_charge(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    async with silent_stack(settings) as (stack, token):
        call = await place_call(stack, token)
        bodies = list(webhook_bodies(call["execution_id"]).values())
        deliveries = [body for body in bodies for _ in range(COPIES)]
        random.Random(8).shuffle(deliveries)

        stored = await deliver_at_once(stack, deliveries)

        assert len(stored.deliveries) == len(deliveries)  # every delivery kept
        assert_one_completion_and_one_charge(stored, call["id"])
        seen = await get_call(stack, token, call["id"])
        assert (seen["status"], seen["credits_charged"]) == ("completed", CALL_PRICE)
        credits = (await stack.api.get("/credits", headers=stack.auth(token))).json()
        assert credits["balance"] == STARTING_CREDITS - CALL_PRICE


async def test_twenty_concurrent_copies_of_the_final_delivery_charge_once(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    async with silent_stack(settings) as (stack, token):
        call = await place_call(stack, token)
        bodies = webhook_bodies(call["execution_id"])
        for status in ("queued", "initiated", "ringing", "in-progress", "call-disconnected"):
            assert (await post_webhook(stack, bodies[status])).status_code == 200

        stored = await deliver_at_once(stack, [bodies["completed"]] * CONCURRENT_DUPLICATES)

        finals = [d for d in stored.deliveries if d.bolna_status == "completed"]
        assert len(finals) == CONCURRENT_DUPLICATES
        assert sorted(d.state for d in finals) == ["duplicate"] * 19 + ["processed"]
        assert_one_completion_and_one_charge(stored, call["id"])


# --- a crash between storing and processing -------------------------------------------------


@contextmanager
def api_that_dies_after_storing(settings: Settings, log_dir: Path) -> Iterator[str]:
    """``tests.reliability.crash_after_store`` on a loopback port; yields its URL."""
    port = free_port()
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(settings_env(settings))
    env.update(TELEMETRY_ENV)
    command = [sys.executable, "-m", "tests.reliability.crash_after_store", "serve"]
    with open(log_dir / "api.log", "wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        yield url
        assert process.wait(timeout=START_TIMEOUT_SECONDS) == CRASH_EXIT_CODE, (
            log_dir / "api.log"
        ).read_text(errors="replace")[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


async def _health(client: httpx.AsyncClient) -> int:
    try:
        return (await client.get("/health")).status_code
    except httpx.TransportError:
        return 0


@pytest.mark.e2e
async def test_a_delivery_stored_before_a_crash_is_applied_after_the_restart(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, webhook_received_grace_seconds=0)
    async with silent_stack(settings) as (stack, token):
        call = await place_call(stack, token)
    completed = webhook_bodies(call["execution_id"])["completed"]

    with api_that_dies_after_storing(settings, tmp_path) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await eventually(lambda: _health(client), lambda status: status == 200, timeout=30)
            with pytest.raises(httpx.TransportError):  # Bolna gets no answer
                await post_webhook(SimpleNamespace(api=client), completed)

    crashed = await read_stored(settings)
    assert [(d.bolna_status, d.state) for d in crashed.deliveries] == [("completed", "received")]
    assert [c.status for c in crashed.calls] == ["queued"]
    assert crashed.charges() == []

    async with running_stack(settings, step_delay_ms=SILENT_SIMULATOR_MS) as stack:  # restarted
        stored = await eventually(lambda: read_stored(settings), all_settled)
        assert_one_completion_and_one_charge(stored, call["id"])
        # Bolna never had an answer, so it delivers again: a harmless duplicate.
        again = await post_webhook(stack, completed)
        assert (again.status_code, again.json()["state"]) == (200, "duplicate")
        after: Any = await read_stored(settings)
        assert len(after.deliveries) == 2  # both deliveries that reached us, stored
        assert_one_completion_and_one_charge(after, call["id"])
        credits = (await stack.api.get("/credits", headers=stack.auth(token))).json()
        assert credits["balance"] == STARTING_CREDITS - CALL_PRICE
