"""The Bolna client's own unit tests: its edge is HTTP, so a MockTransport stands in."""

from __future__ import annotations

import json

import httpx
import pytest

from app.bolna.client import BolnaClient, RetryPolicy
from app.bolna.errors import (
    BolnaRateLimited,
    BolnaRejected,
    BolnaServerError,
    BolnaTimeout,
    BolnaUnauthorized,
    BolnaUnreachable,
)
from tests.conftest import make_settings

AGENT = "6f1c2c1e-1111-4111-8111-111111111111"


def client_with(handler, **overrides) -> tuple[BolnaClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request, len(seen))

    settings = make_settings("sqlite+aiosqlite:///:memory:", bolna_max_retries=3, **overrides)
    http = httpx.AsyncClient(transport=httpx.MockTransport(recording))
    return BolnaClient(http, settings), seen


async def test_success_sends_bearer_and_body_and_returns_execution_id():
    client, seen = client_with(
        lambda req, n: httpx.Response(
            200, json={"message": "done", "status": "queued", "execution_id": "exec-1"}
        )
    )
    execution_id = await client.make_call(
        agent_id=AGENT, recipient_phone_number="+919876543210", user_data={"call_id": "1"}
    )
    assert execution_id == "exec-1"
    request = seen[0]
    assert request.url.path == "/call"
    assert request.headers["authorization"] == "Bearer test-bolna-key"
    body = json.loads(request.content)
    assert body == {
        "agent_id": AGENT,
        "recipient_phone_number": "+919876543210",
        "user_data": {"call_id": "1"},
    }


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_retries_transient_failures_then_succeeds(status):
    client, seen = client_with(
        lambda req, n: (
            httpx.Response(status, json={"error": status, "message": "x"})
            if n < 3
            else httpx.Response(200, json={"execution_id": "exec-2"})
        )
    )
    assert (
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210") == "exec-2"
    )
    assert len(seen) == 3


async def test_gives_up_after_max_retries_with_typed_error():
    client, seen = client_with(lambda req, n: httpx.Response(503, json={"message": "down"}))
    with pytest.raises(BolnaServerError) as info:
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert len(seen) == 4  # first try + 3 retries
    assert info.value.bolna_status == 503
    assert info.value.endpoint == "/call"
    assert info.value.http_status == 502


async def test_rate_limit_exhausted_is_a_warning_level_error():
    client, _ = client_with(lambda req, n: httpx.Response(429))
    with pytest.raises(BolnaRateLimited) as info:
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert info.value.level == "warning"
    assert info.value.http_status == 503


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_not_retried(status):
    client, seen = client_with(
        lambda req, n: httpx.Response(status, json={"message": "Access denied"})
    )
    with pytest.raises(BolnaUnauthorized):
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert len(seen) == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_client_errors_are_not_retried_and_expected(status):
    client, seen = client_with(
        lambda req, n: httpx.Response(status, json={"message": "bad number"})
    )
    with pytest.raises(BolnaRejected, match="bad number") as info:
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert len(seen) == 1
    assert info.value.expected is True


async def test_timeouts_and_connection_errors_are_retried_then_typed():
    def timeout(req, n):
        raise httpx.ReadTimeout("slow", request=req)

    client, seen = client_with(timeout)
    with pytest.raises(BolnaTimeout):
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert len(seen) == 4

    def refused(req, n):
        raise httpx.ConnectError("refused", request=req)

    client, seen = client_with(refused)
    with pytest.raises(BolnaUnreachable):
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert len(seen) == 4


async def test_success_without_execution_id_is_a_server_error():
    client, _ = client_with(lambda req, n: httpx.Response(200, json={"message": "done"}))
    with pytest.raises(BolnaServerError, match="no execution id"):
        await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(max_retries=3, base_seconds=0.5, max_seconds=4.0)
    assert policy.delay(1, retry_after=2.0) == 2.0
    assert policy.delay(1, retry_after=60.0) == 4.0


def test_backoff_is_jittered_and_bounded():
    policy = RetryPolicy(max_retries=5, base_seconds=0.5, max_seconds=4.0)
    delays = [policy.delay(attempt, None) for attempt in range(1, 8) for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 10


async def test_retry_after_header_delays_the_retry(monkeypatch):
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("app.bolna.client.asyncio.sleep", fake_sleep)
    client, _ = client_with(
        lambda req, n: (
            httpx.Response(429, headers={"Retry-After": "1.5"})
            if n == 1
            else httpx.Response(200, json={"execution_id": "e"})
        ),
        bolna_backoff_max_seconds=10.0,
    )
    await client.make_call(agent_id=AGENT, recipient_phone_number="+919876543210")
    assert slept == [1.5]
