"""Schemathesis against the app's own OpenAPI schema: every operation, valid and invalid
input, with a valid token (so requests get past auth into the handlers).

What must hold for every generated request: no 5xx; a 4xx answers our error body
`{"error": <code>, "detail": <a sentence>}`; input that violates the schema is refused
with a 4xx (schemathesis's `negative_data_rejection`). Deterministic: hypothesis runs
derandomized with a fixed number of examples per operation.

Requests go through the same in-process stack as every other API test (httpx over
ASGI, one event loop), not through schemathesis's own ASGI client, so the app's
lifespan, database and simulator are the ones the fixtures manage.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.checks import negative_data_rejection, not_a_server_error

from tests.conftest import API_BASE
from tests.security.conftest import FUZZ, SecurityStack, assert_clear_error

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLES_PER_OPERATION = 60
MAX_DB_ID = 2**63 - 1  # ids are BIGINT (PostgreSQL) / INTEGER (SQLite): signed 64-bit

# Every operation of the schema; test_every_operation_is_fuzzed keeps this list honest.
OPERATIONS = [
    "GET /health",
    "POST /auth/login",
    "POST /agents",
    "GET /agents",
    "POST /contacts",
    "GET /contacts",
    "POST /calls",
    "GET /calls",
    "GET /calls/{call_id}",
    "GET /credits",
    "POST /webhooks/bolna",
    "POST /campaigns",
    "GET /campaigns",
    "GET /campaigns/{campaign_id}",
    "GET /campaigns/{campaign_id}/items",
    "POST /campaigns/{campaign_id}/start",
    "POST /campaigns/{campaign_id}/pause",
    "POST /campaigns/{campaign_id}/resume",
    "POST /campaigns/{campaign_id}/cancel",
]
_REQUEST_FIELDS = ("method", "url", "headers", "params", "json", "data", "files", "cookies")


def schema_of(shared: SecurityStack) -> Any:
    return schemathesis.openapi.from_dict(shared.stack.app.openapi())


async def send(shared: SecurityStack, case: Any) -> httpx.Response:
    """The request schemathesis would send, through the test stack's ASGI client."""
    kwargs = case.as_transport_kwargs(base_url=API_BASE)
    prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in _REQUEST_FIELDS})
    request = prepared.prepare()
    body = request.body.encode() if isinstance(request.body, str) else request.body
    return await shared.stack.api.request(
        str(request.method), str(request.url), headers=dict(request.headers), content=body
    )


async def test_every_operation_is_fuzzed(shared: SecurityStack) -> None:
    labels = [result.ok().label for result in schema_of(shared).get_all_operations()]
    assert sorted(labels) == sorted(OPERATIONS), "add new operations to OPERATIONS"


def _with_query(case: Any, **params: str) -> Any:
    case.query = {**(case.query or {}), **params}
    return case


def case_strategy(shared: SecurityStack, label: str) -> st.SearchStrategy[Any]:
    """Valid and invalid requests for one operation, carrying alice's token (or, for the
    webhook, the webhook token: a query parameter the schema does not declare)."""
    cached = shared.cache.get(label)
    if cached is not None:
        return cached
    method, path = label.split(" ", 1)
    operation = schema_of(shared)[path][method]
    stack = shared.stack
    headers = {} if path.startswith("/webhooks/") else stack.auth(stack.tokens["alice"])
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE, headers=headers),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE, headers=headers),
    )
    if path.startswith("/webhooks/"):
        token = stack.settings.bolna_webhook_token
        cases = cases.map(lambda case: _with_query(case, token=token))
    shared.cache[label] = cases
    return cases


@pytest.mark.parametrize("label", OPERATIONS)
@settings(FUZZ, max_examples=EXAMPLES_PER_OPERATION)
@given(data=st.data())
async def test_no_input_is_a_server_error_or_an_unclear_refusal(
    shared: SecurityStack, label: str, data: st.DataObject
) -> None:
    case = data.draw(case_strategy(shared, label), label="case")
    response = await send(shared, case)
    case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])
    if 400 <= response.status_code < 500:
        assert_clear_error(response)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/calls/{big}", None),
        ("GET", "/campaigns/{big}", None),
        ("GET", "/campaigns/{big}/items", None),
        ("POST", "/campaigns/{big}/start", None),
        ("POST", "/campaigns/{big}/pause", None),
        ("POST", "/campaigns/{big}/resume", None),
        ("POST", "/campaigns/{big}/cancel", None),
        ("POST", "/calls", {"agent_id": "{big}", "phone_number": "+14155550100"}),
        ("POST", "/calls", {"agent_id": 1, "contact_id": "{big}"}),
        ("POST", "/campaigns", {"name": "x", "agent_id": "{big}", "contact_ids": [1]}),
        ("POST", "/campaigns", {"name": "x", "agent_id": 1, "contact_ids": ["{big}"]}),
    ],
)
async def test_ids_beyond_the_database_range_are_refused(
    shared: SecurityStack, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """No row has such an id: 404 (or 422), never a driver overflow answered 500."""
    big = MAX_DB_ID + 1
    content = None
    if body is not None:
        content = json.dumps(body).replace('"{big}"', str(big)).encode()
    stack = shared.stack
    response = await stack.api.request(
        method,
        path.format(big=big),
        content=content,
        headers={**stack.auth(stack.tokens["alice"]), "content-type": "application/json"},
    )
    assert response.status_code in (404, 422), response.text
    assert_clear_error(response)


async def test_a_body_that_is_not_json_is_a_sentence(shared: SecurityStack) -> None:
    stack = shared.stack
    response = await stack.api.post(
        "/agents",
        content=b'{"name": "x", ',
        headers={**stack.auth(stack.tokens["alice"]), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert_clear_error(response)
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no/such/endpoint", 404), ("DELETE", "/agents", 405), ("PUT", "/calls/1", 405)],
)
async def test_unknown_routes_and_methods_answer_a_sentence(
    shared: SecurityStack, method: str, path: str, status: int
) -> None:
    response = await shared.stack.api.request(method, path)
    assert response.status_code == status
    assert_clear_error(response)


async def test_assert_clear_error_refuses_fastapis_default_body() -> None:
    default = httpx.Response(
        422,
        json={"detail": [{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}]},
    )
    with pytest.raises(AssertionError):
        assert_clear_error(default)
    assert_clear_error(
        httpx.Response(422, json={"error": "validation_error", "detail": "name: Field required"})
    )
