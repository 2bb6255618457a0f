"""Bearer-token attacks through the real API: every forged, foreign, stale or orphaned
token is a 401 on every protected endpoint; another user's ids answer exactly like ids
that do not exist; and a flood of bad tokens costs the error budget a bounded handful
of events, however long it lasts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from app.auth.service import create_token
from app.config import Settings
from app.models import Agent, User
from telemetry import error_policy
from telemetry._auth_signals import AuthSignals
from telemetry.testing import observe_exports
from tests.conftest import make_settings, quiet_telemetry
from tests.security.conftest import SecurityStack, assert_clear_error, secured_stack

# Every operation that needs a bearer token (the others: /health, /auth/login, the webhook).
PROTECTED = [
    ("POST", "/agents"),
    ("GET", "/agents"),
    ("POST", "/contacts"),
    ("GET", "/contacts"),
    ("POST", "/calls"),
    ("GET", "/calls"),
    ("GET", "/calls/1"),
    ("GET", "/credits"),
    ("POST", "/campaigns"),
    ("GET", "/campaigns"),
    ("GET", "/campaigns/1"),
    ("GET", "/campaigns/1/items"),
    ("POST", "/campaigns/1/start"),
    ("POST", "/campaigns/1/pause"),
    ("POST", "/campaigns/1/resume"),
    ("POST", "/campaigns/1/cancel"),
]
# What an attacker might try to pass off as a public key (HS256 signed with it).
PUBLIC_KEY_PEM = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand, as an attacker would (PyJWT refuses to make most of these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.digest(key, signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(signature)}"


def claims_for(user_id: int, **overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {"sub": str(user_id), "iat": now, "exp": now + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def attacks(settings: Settings, alice_id: int, bob_token: str) -> dict[str, str]:
    secret = settings.jwt_secret.encode()
    hs256 = {"alg": "HS256", "typ": "JWT"}
    header, _, signature = bob_token.split(".")
    alice_payload = _b64(json.dumps(claims_for(alice_id)).encode())
    return {
        "alg none": forge({"alg": "none", "typ": "JWT"}, claims_for(alice_id), None),
        "alg None": forge({"alg": "None"}, claims_for(alice_id), None),
        "alg none, dot-less": forge({"alg": "none"}, claims_for(alice_id), None).rstrip("."),
        "alg HS256, empty signature": forge(hs256, claims_for(alice_id), None),
        "RS256 header, HMAC with a public key": forge(
            {"alg": "RS256", "typ": "JWT"}, claims_for(alice_id), PUBLIC_KEY_PEM
        ),
        "HS256 signed with a public key": forge(hs256, claims_for(alice_id), PUBLIC_KEY_PEM),
        "HS512 with the right secret": _hs512(secret, claims_for(alice_id)),
        "wrong key": forge(hs256, claims_for(alice_id), b"a-different-secret-of-32-chars!!!!"),
        "attacker's own jku": forge(
            {**hs256, "jku": "http://127.0.0.1:9/keys.json", "kid": "attacker"},
            claims_for(alice_id),
            b"attacker-key",
        ),
        "expired": forge(hs256, claims_for(alice_id, exp=1_000_000_000), secret),
        "no exp": forge(hs256, claims_for(alice_id, exp=None), secret),
        "exp not a number": forge(hs256, claims_for(alice_id, exp="tomorrow"), secret),
        "no sub": forge(hs256, claims_for(alice_id, sub=None), secret),
        "sub not a user id": forge(hs256, claims_for(alice_id, sub="admin"), secret),
        "not yet valid": forge(
            hs256, claims_for(alice_id, nbf=int(datetime.now(UTC).timestamp()) + 3600), secret
        ),
        "bob's signature on alice's claims": f"{header}.{alice_payload}.{signature}",
        "truncated signature": bob_token[:-6],
        "two tokens glued": f"{bob_token}.{bob_token}",
        "not base64": "eyJ!!!.eyJ!!!.sig",
        "huge": "eyJ" + "A" * 20_000,
    }


def _hs512(secret: bytes, claims: dict[str, Any]) -> str:
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS512'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    return f"{signing_input}.{_b64(hmac.digest(secret, signing_input.encode(), hashlib.sha512))}"


async def user_id(secured: SecurityStack, email: str) -> int:
    async with secured.stack.app.state.sessionmaker() as session:
        found = await session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return int(found)


async def agents_of(secured: SecurityStack, owner: int) -> int:
    async with secured.stack.app.state.sessionmaker() as session:
        count = await session.scalar(select(func.count()).where(Agent.user_id == owner))
    return int(count or 0)


async def test_every_attack_is_401_on_every_protected_endpoint(secured: SecurityStack) -> None:
    stack = secured.stack
    alice = await user_id(secured, "alice@example.com")
    agents_before = await agents_of(secured, alice)
    for name, token in attacks(stack.settings, alice, stack.tokens["bob"]).items():
        for method, path in PROTECTED:
            response = await stack.api.request(
                method,
                path,
                json={"name": "Mallory", "bolna_agent_id": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 401, (name, method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert_clear_error(response)
    assert await agents_of(secured, alice) == agents_before


async def test_a_missing_or_non_bearer_authorization_is_401(secured: SecurityStack) -> None:
    headers = ["", "Bearer", "Bearer ", "Basic YWxpY2U6cGFzc3dvcmQxMjM=", "Token abc", "bearer"]
    for header in [None, *headers]:
        sent = {} if header is None else {"Authorization": header}
        for method, path in PROTECTED:
            response = await secured.stack.api.request(method, path, headers=sent)
            assert response.status_code == 401, (header, method, path, response.text)
            assert_clear_error(response)


async def test_the_real_token_still_works(secured: SecurityStack) -> None:
    """The attacks above fail for what they are, not because every token fails."""
    stack = secured.stack
    response = await stack.api.get("/agents", headers=stack.auth(stack.tokens["alice"]))
    assert response.status_code == 200


async def test_a_deleted_users_token_is_401_and_writes_nothing(secured: SecurityStack) -> None:
    """Decision: 401, not empty lists. Such a token used to read `[]` and then answer 500
    on its first write (a foreign key violation, reported as a fault); one primary-key
    lookup per request now refuses it up front."""
    stack = secured.stack
    async with stack.app.state.sessionmaker() as session, session.begin():
        user = User(email="gone@example.com", password_hash="x", credits_balance=0)
        session.add(user)
        await session.flush()
        gone = user.id
    token = create_token(gone, stack.settings)
    async with stack.app.state.sessionmaker() as session, session.begin():
        await session.execute(delete(User).where(User.id == gone))
    with observe_exports() as seen:
        for method, path in PROTECTED:
            response = await stack.api.request(
                method,
                path,
                json={"name": "Ghost", "bolna_agent_id": "6f1c2c1e-1111-4111-8111-111111111111"},
                headers=stack.auth(token),
            )
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["detail"] == (
                "The bearer token's user no longer exists; log in again."
            )
    assert await agents_of(secured, gone) == 0
    assert [kind for kind, _ in seen if kind == "error_report"] == []


def _with(path: str, **ids: int) -> str:
    return path.format(**ids)


async def test_another_users_ids_answer_like_ids_that_do_not_exist(
    secured: SecurityStack,
) -> None:
    """Alice, with bob's ids, learns nothing she would not learn with made-up ids."""
    stack = secured.stack
    alice_token = stack.tokens["alice"]
    bob = secured.owned["bob"]
    missing = 9_999
    probes: list[tuple[str, str, Any]] = [
        ("GET", "/calls/{call}", None),
        ("GET", "/campaigns/{campaign}", None),
        ("GET", "/campaigns/{campaign}/items", None),
        ("POST", "/campaigns/{campaign}/start", None),
        ("POST", "/campaigns/{campaign}/pause", None),
        ("POST", "/campaigns/{campaign}/resume", None),
        ("POST", "/campaigns/{campaign}/cancel", None),
        ("POST", "/calls", {"agent_id": "{agent}", "phone_number": "+14155550100"}),
        (
            "POST",
            "/calls",
            {"agent_id": secured.owned["alice"].agent_id, "contact_id": "{contact}"},
        ),
        ("POST", "/campaigns", {"name": "x", "agent_id": "{agent}", "contact_ids": []}),
        (
            "POST",
            "/campaigns",
            {
                "name": "x",
                "agent_id": secured.owned["alice"].agent_id,
                "contact_ids": ["{contact}"],
            },
        ),
    ]

    async def ask(method: str, path: str, body: Any, ids: dict[str, int]) -> tuple[int, str]:
        content = None
        if body is not None:
            text = json.dumps(body)
            for name, value in ids.items():
                text = text.replace(f'"{{{name}}}"', str(value))
            content = text.encode()
        response = await stack.api.request(
            method,
            path.format(**ids),
            content=content,
            headers={**stack.auth(alice_token), "content-type": "application/json"},
        )
        detail = str(response.json().get("detail", ""))
        for value in ids.values():
            detail = detail.replace(str(value), "<id>")
        return response.status_code, detail

    bobs = {"call": bob.call_id, "campaign": bob.campaign_id, "agent": bob.agent_id}
    bobs["contact"] = bob.contact_id
    made_up = dict.fromkeys(bobs, missing)
    for method, path, body in probes:
        with_bobs = await ask(method, path, body, bobs)
        with_made_up = await ask(method, path, body, made_up)
        assert with_bobs[0] in (404, 422), (method, path, with_bobs)
        assert with_bobs == with_made_up, (method, path)

    bob_campaign = await stack.api.get(
        f"/campaigns/{bob.campaign_id}", headers=stack.auth(stack.tokens["bob"])
    )
    assert bob_campaign.json()["status"] == "draft"  # alice's start/pause/cancel did nothing


@pytest.mark.parametrize(
    ("path", "owned_field"),
    [
        ("/agents", "agent_id"),
        ("/contacts", "contact_id"),
        ("/calls", "call_id"),
        ("/campaigns", "campaign_id"),
    ],
)
async def test_lists_show_only_ones_own_rows(
    secured: SecurityStack, path: str, owned_field: str
) -> None:
    stack = secured.stack
    response = await stack.api.get(path, headers=stack.auth(stack.tokens["alice"]))
    assert response.status_code == 200
    body = response.json()
    rows = body if isinstance(body, list) else body["items"]
    ids = {row["id"] for row in rows}
    assert getattr(secured.owned["alice"], owned_field) in ids
    assert getattr(secured.owned["bob"], owned_field) not in ids


# --- a flood of bad tokens and the error budget -----------------------------------------


@pytest.fixture
async def sending(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SecurityStack]:
    """A stack whose error policy sends (to a backend that discards): the budget counts,
    and the client address comes from X-Forwarded-For, so a flood can come from many."""
    monkeypatch.setattr("telemetry._auth_signals._signals", AuthSignals())
    settings = make_settings(settings.database_url, trusted_proxies="127.0.0.1")
    telemetry_settings = quiet_telemetry(send_environments="test", error_backend="none")
    async with secured_stack(settings, telemetry_settings=telemetry_settings) as running:
        yield running


def budget_used() -> int:
    return int(error_policy.status()["budget"]["used"])


async def flood(secured: SecurityStack, requests: int, clients: int) -> None:
    stack = secured.stack
    alice = await user_id(secured, "alice@example.com")
    tokens = list(attacks(stack.settings, alice, stack.tokens["bob"]).values())
    for i in range(requests):
        response = await stack.api.get(
            "/agents",
            headers={
                "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                "X-Forwarded-For": f"198.51.100.{i % clients}",
            },
        )
        assert response.status_code == 401


async def test_a_flood_of_bad_tokens_costs_a_bounded_handful_of_events(
    sending: SecurityStack,
) -> None:
    with observe_exports() as seen:
        # 30 failures from each of 10 clients: past every threshold of the auth signals.
        await flood(sending, requests=300, clients=10)
        after_first = budget_used()
        reports_after_first = len([k for k, _ in seen if k == "error_report"])
        await flood(sending, requests=600, clients=30)
    # One burst warning, one forgery warning and at most one "all failing" error (none
    # here: the fixture's own requests verified tokens in the same window), then nothing
    # more for minutes, however many bad tokens follow.
    assert 2 <= after_first <= 3, error_policy.status()
    assert budget_used() == after_first, "the second, larger flood cost more events"
    assert len([k for k, _ in seen if k == "error_report"]) == reports_after_first
    ok = await sending.stack.api.get(
        "/agents", headers=sending.stack.auth(sending.stack.tokens["alice"])
    )
    assert ok.status_code == 200
