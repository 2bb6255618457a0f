from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.auth.service import create_token
from tests.conftest import Stack


async def test_login_returns_a_working_bearer_token(stack: Stack):
    response = await stack.api.post(
        "/auth/login", json={"email": "Alice@Example.com", "password": "password123"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    me = await stack.api.get("/credits", headers=stack.auth(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["balance"] == 1000


@pytest.mark.parametrize(
    "body",
    [
        {"email": "alice@example.com", "password": "wrong-password"},
        {"email": "nobody@example.com", "password": "password123"},
    ],
)
async def test_bad_credentials_are_401_with_a_sentence(stack: Stack, body):
    response = await stack.api.post("/auth/login", json=body)
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "The email or password is incorrect.",
    }


async def test_login_with_missing_fields_is_422(stack: Stack):
    response = await stack.api.post("/auth/login", json={"email": "alice@example.com"})
    assert response.status_code == 422
    assert "password" in response.json()["detail"]


def _token(secret: str, *, alg: str = "HS256", **claims) -> str:
    payload = {"sub": "1", "exp": datetime.now(UTC) + timedelta(minutes=5)}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=alg)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "Send a bearer token"),
        ("Basic abc", "Send a bearer token"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer " + _token("some-other-secret-that-is-long-enough!!"), "signature"),
        ("Bearer " + _token("test-secret-with-at-least-32-characters!!", alg="HS512"), "algorithm"),
        (
            "Bearer "
            + _token(
                "test-secret-with-at-least-32-characters!!",
                exp=datetime.now(UTC) - timedelta(minutes=1),
            ),
            "expired",
        ),
        (
            "Bearer " + jwt.encode({"sub": "1"}, "test-secret-with-at-least-32-characters!!"),
            "invalid",
        ),
    ],
    ids=["missing", "basic", "malformed", "forged", "foreign-alg", "expired", "no-exp"],
)
async def test_bad_tokens_are_401_with_www_authenticate(stack: Stack, header, fragment):
    headers = {"Authorization": header} if header else {}
    response = await stack.api.get("/agents", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert fragment in response.json()["detail"]


async def test_unsigned_none_algorithm_token_is_refused(stack: Stack):
    token = jwt.encode(
        {"sub": "1", "exp": datetime.now(UTC) + timedelta(minutes=5)}, None, algorithm="none"
    )
    response = await stack.api.get("/agents", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_token_of_a_deleted_or_unknown_user_is_401(stack: Stack):
    token = create_token(999_999, stack.settings)
    for path in ("/agents", "/credits"):
        response = await stack.api.get(path, headers=stack.auth(token))
        assert response.status_code == 401
        assert "no longer exists" in response.json()["detail"]
