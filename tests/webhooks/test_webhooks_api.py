from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.db import create_engine, create_sessionmaker
from app.models import WebhookDelivery
from tests.conftest import Stack, running_stack
from tests.helpers import eventually, get_call, make_agent, wait_for_call, wait_sim_idle

TOKEN = "test-webhook-token"


async def deliveries(stack: Stack) -> list[WebhookDelivery]:
    async with stack.app.state.sessionmaker() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def post_webhook(stack: Stack, body, token: str | None = TOKEN):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    params = {"token": token} if token is not None else {}
    return await stack.api.post(
        "/webhooks/bolna",
        content=content,
        params=params,
        headers={"content-type": "application/json"},
    )


async def place_call(stack: Stack) -> dict:
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    response = await stack.api.post(
        "/calls",
        json={"agent_id": agent_id, "phone_number": "+14155550123"},
        headers=stack.auth(token),
    )
    assert response.status_code == 201
    return response.json()


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_wrong_or_missing_token_is_401_and_nothing_is_stored(stack: Stack, token):
    response = await post_webhook(stack, {"id": "x", "status": "ringing"}, token=token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_webhook_token"
    assert await deliveries(stack) == []


async def test_malformed_json_is_400_and_kept_for_inspection(stack: Stack):
    response = await post_webhook(stack, b"{not json")
    assert response.status_code == 400
    assert response.json()["detail"] == "The webhook body is not valid JSON."
    stored = await deliveries(stack)
    assert [(d.state, d.payload) for d in stored] == [("rejected", "{not json")]


async def test_payload_without_execution_id_is_400_with_a_sentence(stack: Stack):
    response = await post_webhook(stack, {"status": "completed"})
    assert response.status_code == 400
    assert "execution id" in response.json()["detail"]


async def test_unknown_execution_id_is_stored_and_accepted_202(stack: Stack):
    response = await post_webhook(stack, {"id": "never-seen", "status": "ringing"})
    assert response.status_code == 202
    assert response.json()["state"] == "unmatched"
    stored = await deliveries(stack)
    assert stored[0].execution_id == "never-seen"
    assert stored[0].state == "unmatched"


async def test_unmatched_delivery_is_applied_once_its_call_exists(stack: Stack):
    """Bolna can be faster than our own commit of the execution id."""
    created = await place_call(stack)
    await wait_for_call(stack, stack.tokens["alice"], created["id"])
    await wait_sim_idle(stack)
    # A brand-new execution id arrives before any call carries it...
    early = await post_webhook(stack, {"id": "late-exec", "status": "ringing"})
    assert early.status_code == 202
    # ...then the call row gets it (as initiate_call does right after Bolna answers).
    from app.models import Call

    async with stack.app.state.sessionmaker() as session, session.begin():
        call = await session.get(Call, created["id"])
        assert call is not None
        second = Call(
            user_id=call.user_id,
            agent_id=call.agent_id,
            phone_number=call.phone_number,
            execution_id="late-exec",
            status="queued",
        )
        session.add(second)
        await session.flush()
        second_id = second.id

    async def state():
        return [d.state for d in await deliveries(stack) if d.execution_id == "late-exec"]

    await eventually(state, lambda s: s == ["processed"])
    async with stack.app.state.sessionmaker() as session:
        assert (await session.get(Call, second_id)).status == "ringing"


async def test_processing_failure_is_stored_failed_then_retried_to_success(
    stack: Stack, monkeypatch
):
    import app.webhooks.service as service

    original = service.charge_call
    failures = {"left": 2}

    async def flaky_charge(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("credit store hiccup")
        return await original(*args, **kwargs)

    monkeypatch.setattr(service, "charge_call", flaky_charge)
    created = await place_call(stack)
    call = await wait_for_call(stack, stack.tokens["alice"], created["id"], timeout=15)
    assert call["credits_charged"] > 0
    completed = [d for d in await deliveries(stack) if d.bolna_status == "completed"]
    assert len(completed) == 1
    assert completed[0].state == "processed"
    assert completed[0].attempts >= 3
    credits = (await stack.api.get("/credits", headers=stack.auth(stack.tokens["alice"]))).json()
    assert len([e for e in credits["ledger"] if e["reason"] == "call"]) == 1


async def test_retries_give_up_after_max_attempts_and_stay_visible(settings, monkeypatch):
    import app.webhooks.service as service

    async def broken_charge(*args, **kwargs):
        raise RuntimeError("ledger is broken")

    monkeypatch.setattr(service, "charge_call", broken_charge)
    settings = settings.model_copy(update={"webhook_retry_max_attempts": 3})
    from tests.conftest import create_user_token

    async with running_stack(settings) as stack:
        stack.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
        created = await place_call(stack)

        async def completed_state():
            rows = [d for d in await deliveries(stack) if d.bolna_status == "completed"]
            return rows[0].state if rows else None

        await eventually(completed_state, lambda s: s == "given_up", timeout=15)
        rows = [d for d in await deliveries(stack) if d.bolna_status == "completed"]
        assert rows[0].attempts == 3
        assert "ledger is broken" in rows[0].last_error
        call = await get_call(stack, stack.tokens["alice"], created["id"])
        assert call["status"] == "call-disconnected"  # not completed, not charged
        assert call["credits_charged"] == 0


async def test_malformed_deliveries_from_the_simulator_do_not_stop_the_call(stack: Stack):
    await stack.faults(webhooks={"malformed": True})
    created = await place_call(stack)
    await wait_for_call(stack, stack.tokens["alice"], created["id"])
    rejected = [d for d in await deliveries(stack) if d.state == "rejected"]
    # Bolna retries non-2xx answers, so each bad body may be stored more than once.
    assert len({d.payload for d in rejected}) == 2


async def test_a_stored_delivery_survives_a_restart_before_processing(settings):
    """The raw body is committed before processing; a new process picks it up."""
    from tests.conftest import create_user_token

    async with running_stack(settings) as stack:
        stack.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
        created = await place_call(stack)
        await wait_for_call(stack, stack.tokens["alice"], created["id"])
        await wait_sim_idle(stack)
        execution_id = created["execution_id"]

    # Simulate a crash between store and process: a received row, due for retry.
    from app.db import utcnow

    engine = create_engine(settings)
    async with create_sessionmaker(engine)() as session, session.begin():
        session.add(
            WebhookDelivery(
                execution_id="exec-restart",
                bolna_status="ringing",
                payload=json.dumps({"id": "exec-restart", "status": "ringing"}),
                state="received",
                next_attempt_at=utcnow(),
            )
        )
    await engine.dispose()

    async with running_stack(settings) as stack:

        async def state():
            rows = await deliveries(stack)
            return [d.state for d in rows if d.execution_id == "exec-restart"]

        await eventually(state, lambda s: s and s[0] in ("unmatched", "orphaned"))
    assert execution_id


async def test_payload_without_status_is_400_not_retried(stack: Stack):
    response = await post_webhook(stack, {"id": "exec-x"})
    assert response.status_code == 400
    assert "status" in response.json()["detail"]
    assert [d.state for d in await deliveries(stack)] == ["rejected"]


def test_access_log_redacts_the_webhook_token():
    import logging

    from app.__main__ import _RedactQuerySecrets

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/webhooks/bolna?token=s3cret&x=1", "1.1", 200),
        None,
    )
    assert _RedactQuerySecrets().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "token=[REDACTED]&x=1" in record.getMessage()
