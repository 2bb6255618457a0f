"""Who may post Bolna webhooks, and how much: the token (compared with
`hmac.compare_digest`), the source-address allow-list behind trusted proxies only, and
the body size limit, each checked before anything is read, stored or processed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import func, select

from app.models import WebhookDelivery
from tests.conftest import API_BASE, Stack, make_settings, running_stack
from tests.security.conftest import SecurityStack, assert_clear_error, reopen

TOKEN = "test-webhook-token"
BOLNA_IP = "203.0.113.7"


async def stored_deliveries(stack: Stack) -> int:
    async with stack.app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


@asynccontextmanager
async def client_from(stack: Stack, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests reach the app from ``address`` (the TCP peer)."""
    transport = httpx.ASGITransport(app=stack.app, client=(address, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url=API_BASE) as client:
        yield client


@asynccontextmanager
async def stack_with(sqlite_url: str, **overrides: object) -> AsyncIterator[Stack]:
    async with running_stack(make_settings(sqlite_url, **overrides), start_workers=False) as s:
        yield s


# --- the token ------------------------------------------------------------------------


WRONG_TOKENS: list[tuple[dict[str, str], str]] = [
    ({}, "missing"),
    ({"token": ""}, "empty"),
    ({"token": "x" * len(TOKEN)}, "wrong, same length"),
    ({"token": TOKEN[:-1] + "X"}, "last character wrong"),
    ({"token": TOKEN[:-1]}, "a prefix"),
    ({"token": TOKEN + "x"}, "longer"),
    ({"token": TOKEN.upper()}, "other case"),
    ({"token": f" {TOKEN}"}, "padded"),
    ({"token": "t\u00e9st-w\u00e9bhook-t\u00f8ken"}, "non-ASCII"),
    ({"Token": TOKEN}, "parameter name in another case"),
]


async def test_a_wrong_or_missing_token_is_401_and_nothing_is_stored_or_applied(
    secured: SecurityStack,
) -> None:
    stack = secured.stack
    owned = secured.owned["alice"]
    await reopen(stack, owned.call_id)
    url = f"/calls/{owned.call_id}"
    call_before = (await stack.api.get(url, headers=stack.auth(stack.tokens["alice"]))).json()
    before = await stored_deliveries(stack)
    for params, why in WRONG_TOKENS:
        response = await stack.api.post(
            "/webhooks/bolna",
            params=params,
            json={"id": owned.execution_id, "status": "completed", "conversation_duration": 60},
        )
        assert response.status_code == 401, why
        assert response.json()["error"] == "invalid_webhook_token"
        # The token goes in the URL: no bearer challenge pointing elsewhere.
        assert "www-authenticate" not in response.headers, why
        assert_clear_error(response)
    assert await stored_deliveries(stack) == before
    call_after = (await stack.api.get(url, headers=stack.auth(stack.tokens["alice"]))).json()
    assert call_after == call_before


async def test_the_token_in_a_header_instead_of_the_url_is_refused(secured: SecurityStack) -> None:
    response = await secured.stack.api.post(
        "/webhooks/bolna",
        json={"id": "x", "status": "ringing"},
        headers={"Authorization": f"Bearer {TOKEN}", "X-Webhook-Token": TOKEN},
    )
    assert response.status_code == 401


async def test_the_right_token_applies_the_same_delivery(secured: SecurityStack) -> None:
    """The refusals above are about the token, not the request."""
    stack = secured.stack
    owned = secured.owned["alice"]
    await reopen(stack, owned.call_id)
    response = await stack.api.post(
        "/webhooks/bolna",
        params={"token": TOKEN},
        json={"id": owned.execution_id, "status": "completed", "conversation_duration": 60},
    )
    assert response.status_code == 200
    assert response.json()["state"] == "processed"


# --- the source-address allow-list -----------------------------------------------------


async def test_only_allowed_addresses_may_post(sqlite_url: str) -> None:
    async with stack_with(sqlite_url, bolna_webhook_allowed_ips=f"{BOLNA_IP}, 10.1.0.0/16") as s:
        body = {"id": "exec-1", "status": "ringing"}
        for address, allowed in [
            (BOLNA_IP, True),
            ("10.1.200.3", True),
            (f"::ffff:{BOLNA_IP}", True),
            ("203.0.113.8", False),
            ("10.2.0.1", False),
            ("2001:db8::1", False),
            ("127.0.0.1", False),
        ]:
            async with client_from(s, address) as client:
                before = await stored_deliveries(s)
                response = await client.post("/webhooks/bolna", params={"token": TOKEN}, json=body)
            if allowed:
                assert response.status_code == 202, (address, response.text)
                continue
            assert response.status_code == 403, (address, response.text)
            assert response.json() == {
                "error": "webhook_source_not_allowed",
                "detail": "Webhooks are accepted only from the addresses in "
                f"BOLNA_WEBHOOK_ALLOWED_IPS; this request came from {address}.",
            }
            assert await stored_deliveries(s) == before


async def test_a_disallowed_address_is_403_whatever_the_token(sqlite_url: str) -> None:
    async with (
        stack_with(sqlite_url, bolna_webhook_allowed_ips=BOLNA_IP) as s,
        client_from(s, "198.51.100.9") as client,
    ):
        for params in ({}, {"token": "wrong"}, {"token": TOKEN}):
            response = await client.post("/webhooks/bolna", params=params, json={"id": "x"})
            assert response.status_code == 403


async def test_forwarded_for_is_ignored_without_trusted_proxies(sqlite_url: str) -> None:
    async with (
        stack_with(sqlite_url, bolna_webhook_allowed_ips=BOLNA_IP) as s,
        client_from(s, "10.0.0.5") as client,
    ):
        response = await client.post(
            "/webhooks/bolna",
            params={"token": TOKEN},
            json={"id": "x", "status": "ringing"},
            headers={"X-Forwarded-For": BOLNA_IP},
        )
    assert response.status_code == 403
    assert "came from 10.0.0.5." in response.json()["detail"]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "status"),
    [
        ("10.0.0.5", BOLNA_IP, 202),  # Bolna, through our proxy
        ("10.0.0.5", f"{BOLNA_IP}, 10.0.0.9", 202),  # through two of our proxies
        ("10.0.0.5", f"{BOLNA_IP}, 198.51.100.9", 403),  # a spoofed first hop
        ("10.0.0.5", "not-an-address", 403),
        ("10.0.0.5", "", 403),  # no header: the proxy itself is the client
        ("198.51.100.9", BOLNA_IP, 403),  # not our proxy: its header means nothing
    ],
)
async def test_forwarded_for_is_read_only_from_trusted_proxies(
    sqlite_url: str, peer: str, forwarded_for: str, status: int
) -> None:
    async with (
        stack_with(
            sqlite_url, bolna_webhook_allowed_ips=BOLNA_IP, trusted_proxies="10.0.0.0/24"
        ) as s,
        client_from(s, peer) as client,
    ):
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        response = await client.post(
            "/webhooks/bolna",
            params={"token": TOKEN},
            json={"id": "x", "status": "ringing"},
            headers=headers,
        )
    assert response.status_code == status, response.text


# --- the body size limit ---------------------------------------------------------------

LIMIT = 2048


class CountingBody:
    """A chunked request body of ``chunks`` pieces that counts how many were pulled."""

    def __init__(self, chunks: int, size: int = 1024) -> None:
        self.chunks = chunks
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b" " * self.size


async def test_a_declared_length_over_the_limit_is_413_before_reading(sqlite_url: str) -> None:
    async with stack_with(sqlite_url, webhook_max_body_bytes=LIMIT) as s:
        body = b'{"id": "x", "status": "ringing", "pad": "' + b"p" * LIMIT + b'"}'
        response = await s.api.post("/webhooks/bolna", params={"token": TOKEN}, content=body)
        assert response.status_code == 413
        assert response.json() == {
            "error": "webhook_too_large",
            "detail": f"The webhook body is larger than the limit of {LIMIT} bytes.",
        }
        assert await stored_deliveries(s) == 0


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(sqlite_url: str) -> None:
    """No Content-Length: the bytes are counted as they arrive, and reading stops."""
    async with stack_with(sqlite_url, webhook_max_body_bytes=LIMIT) as s:
        body = CountingBody(chunks=100_000)  # 100 MB if it were all read
        response = await s.api.post("/webhooks/bolna", params={"token": TOKEN}, content=body)
        assert response.status_code == 413
        assert body.pulled <= LIMIT // body.size + 1
        assert await stored_deliveries(s) == 0


async def test_a_body_at_the_limit_is_accepted(sqlite_url: str) -> None:
    async with stack_with(sqlite_url, webhook_max_body_bytes=LIMIT) as s:
        head = b'{"id": "x", "status": "ringing", "pad": "'
        body = head + b"p" * (LIMIT - len(head) - 2) + b'"}'
        assert len(body) == LIMIT
        response = await s.api.post("/webhooks/bolna", params={"token": TOKEN}, content=body)
        assert response.status_code == 202, response.text


async def test_the_size_is_checked_after_the_token(sqlite_url: str) -> None:
    """An unauthenticated caller learns nothing about the limit and makes us read nothing."""
    async with stack_with(sqlite_url, webhook_max_body_bytes=LIMIT) as s:
        body = CountingBody(chunks=10)
        response = await s.api.post("/webhooks/bolna", params={"token": "wrong"}, content=body)
        assert response.status_code == 401
        assert body.pulled == 0


async def test_a_content_length_that_is_not_a_number_is_400(sqlite_url: str) -> None:
    async with stack_with(sqlite_url) as s:
        response = await s.api.post(
            "/webhooks/bolna",
            params={"token": TOKEN},
            content=b"{}",
            headers={"Content-Length": "2; drop table"},
        )
    assert response.status_code == 400
    assert_clear_error(response)


def test_the_default_limit_is_one_mebibyte() -> None:
    assert make_settings("sqlite+aiosqlite://").webhook_max_body_bytes == 1024 * 1024
