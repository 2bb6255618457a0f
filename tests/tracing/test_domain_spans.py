"""Domain spans on the critical paths, from real requests through the API to the simulator.

Every test here also runs `assert_no_pii` over everything it exported: no phone number,
bearer token or JWT may reach an exporter.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from telemetry import attributes as attrs
from telemetry.testing import SpanCapture, capture_spans, settings_for_tests
from tests.conftest import Stack, create_user_token, running_stack
from tests.helpers import eventually, make_agent, make_contact, wait_for_call, wait_sim_idle

PHONE = "+919876543210"
PHONE_DIGITS = re.compile(r"9876543210|4155550123")
SECRETS = re.compile(r"Bearer\s+\S|eyJ[\w-]+\.eyJ|test-bolna-key|test-webhook-token")


def _values(span: ReadableSpan) -> Iterable[str]:
    for value in (span.attributes or {}).values():
        yield str(value)
    for event in span.events:
        for value in (event.attributes or {}).values():
            yield str(value)
    for link in span.links:
        for value in (link.attributes or {}).values():
            yield str(value)
    yield span.name


def assert_no_pii(spans: Iterable[ReadableSpan]) -> None:
    for span in spans:
        for value in _values(span):
            assert not PHONE_DIGITS.search(value), f"phone number in {span.name}: {value}"
            assert not SECRETS.search(value), f"secret in {span.name}: {value}"


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one {name!r}, got {[s.name for s in spans]}"
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


@asynccontextmanager
async def traced_stack(settings, **telemetry: str) -> AsyncIterator[tuple[Stack, SpanCapture]]:
    with capture_spans(settings_for_tests(**telemetry)) as capture:
        async with running_stack(settings) as stack:
            stack.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
            yield stack, capture
            assert_no_pii(capture.spans())


@pytest.fixture
async def traced(settings) -> AsyncIterator[tuple[Stack, SpanCapture]]:
    """The default telemetry settings: SQL statements as db.query events."""
    async with traced_stack(settings) as traced:
        yield traced


@pytest.fixture
async def traced_sql_spans(settings) -> AsyncIterator[tuple[Stack, SpanCapture]]:
    """TELEMETRY_SQL_SPANS=spans: a span per SQL statement."""
    async with traced_stack(settings, sql_spans="spans") as traced:
        yield traced


async def place(stack: Stack) -> dict:
    token = stack.tokens["alice"]
    agent_id = await make_agent(stack, token)
    contact_id = await make_contact(stack, token, phone=PHONE)
    response = await stack.api.post(
        "/calls", json={"agent_id": agent_id, "contact_id": contact_id}, headers=stack.auth(token)
    )
    return {"response": response, "agent_id": agent_id}


async def test_direct_call_trace_shape(traced):
    stack, capture = traced
    placed = await place(stack)
    assert placed["response"].status_code == 201
    call_id = placed["response"].json()["id"]
    spans = capture.spans()

    server = [s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST /calls")]
    assert len(server) == 1, [s.name for s in spans if s.kind == SpanKind.SERVER]
    initiate = one(spans, "call.initiate")
    assert initiate.parent is not None
    assert initiate.parent.span_id == server[0].context.span_id
    assert initiate.attributes[attrs.CALL_SOURCE] == "direct"
    assert initiate.attributes[attrs.CALL_ID] == call_id
    assert initiate.attributes[attrs.AGENT_ID] == placed["agent_id"]
    assert initiate.attributes[attrs.BOLNA_EXECUTION_ID]
    assert initiate.status.status_code != StatusCode.ERROR

    under_initiate = {s.name for s in children(spans, initiate)}
    assert {"credits.check", "bolna.make_call"} <= under_initiate
    make_call = one(spans, "bolna.make_call")
    http_clients = [s for s in children(spans, make_call) if s.kind == SpanKind.CLIENT]
    assert len(http_clients) == 1
    assert http_clients[0].attributes.get("http.response.status_code", 200) == 200
    queries = [
        (s, e) for s in spans if s.context.trace_id == initiate.context.trace_id for e in s.events
    ]
    queries = [(s, e) for s, e in queries if e.name == "db.query"]
    assert queries, "SQL statements are missing from the call's trace"
    assert all(e.attributes["db.statement"] for _, e in queries)
    assert any(s is initiate or s.name == "credits.check" for s, _ in queries)
    assert not [s for s in spans if s.attributes and s.attributes.get("db.system")]

    # The outgoing Bolna request carried our trace.
    received = (await stack.sim.get("/_sim/calls")).json()[-1]
    assert received["headers_traceparent"]
    assert received["headers_traceparent"].split("-")[1] == f"{initiate.context.trace_id:032x}"


async def test_sql_spans_mode_gives_each_statement_a_span_in_the_trace(traced_sql_spans):
    stack, capture = traced_sql_spans
    placed = await place(stack)
    assert placed["response"].status_code == 201
    spans = capture.spans()
    initiate = one(spans, "call.initiate")
    sql = [s for s in spans if s.attributes and s.attributes.get("db.system")]
    assert sql, "SQLAlchemy spans are missing"
    in_call = [s for s in sql if s.context.trace_id == initiate.context.trace_id]
    assert in_call
    assert all(s.kind == SpanKind.CLIENT and s.attributes[attrs.DB_STATEMENT] for s in in_call)
    # Transaction control (SQLite's BEGIN IMMEDIATE on every transaction) is left out.
    assert not [s for s in sql if s.name.startswith(("BEGIN", "SAVEPOINT", "RELEASE"))]
    assert not [e for s in spans for e in s.events if e.name == "db.query"]


async def test_webhook_processing_links_to_the_call_that_started_it(traced):
    stack, capture = traced
    placed = await place(stack)
    call_id = placed["response"].json()["id"]
    await wait_for_call(stack, stack.tokens["alice"], call_id)
    await wait_sim_idle(stack)
    spans = capture.spans()
    initiate = one(spans, "call.initiate")
    processed = [s for s in spans if s.name == "webhook.process"]
    assert len(processed) >= 6
    for span in processed:
        assert span.attributes[attrs.CALL_ID] == call_id
        assert span.attributes[attrs.WEBHOOK_STATUS]
        linked = [link.context.span_id for link in span.links]
        assert initiate.context.span_id in linked, "webhook span is not linked to the call"
        assert span.context.trace_id != initiate.context.trace_id  # its own trace, linked
    completed = [s for s in processed if s.attributes[attrs.WEBHOOK_STATUS] == "completed"]
    assert len(completed) == 1
    deduct = [s for s in children(spans, completed[0]) if s.name == "credits.deduct"]
    assert len(deduct) == 1
    assert deduct[0].attributes[attrs.CREDITS_AMOUNT] > 0
    transcripts = [s for s in spans if attrs.TRANSCRIPT_LENGTH in (s.attributes or {})]
    for span in transcripts:
        assert "assistant:" not in str(dict(span.attributes))


async def test_bolna_failure_marks_spans_error_with_retry_events(traced):
    stack, capture = traced
    await stack.faults(call={"mode": "500"})
    placed = await place(stack)
    assert placed["response"].status_code == 502
    spans = capture.spans()
    initiate = one(spans, "call.initiate")
    assert initiate.status.status_code == StatusCode.ERROR
    assert initiate.attributes[attrs.ERROR_TYPE] == "BolnaServerError"
    make_call = one(spans, "bolna.make_call")
    assert make_call.status.status_code == StatusCode.ERROR
    retries = [e for e in make_call.events if e.name == "bolna.retry"]
    assert len(retries) == stack.settings.bolna_max_retries
    decisions = [e for e in initiate.events if e.name == "error_policy.decision"]
    assert decisions, "the error policy's decision is not visible on the span"


async def test_auth_verification_span_records_the_result_not_the_token(traced):
    stack, capture = traced
    forged = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiZXhwIjo0MTAyNDQ0ODAwfQ."
        "c2lnbmF0dXJlLW5vdC12YWxpZA"
    )
    response = await stack.api.get("/agents", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    ok = await stack.api.get("/agents", headers=stack.auth(stack.tokens["alice"]))
    assert ok.status_code == 200
    results = [
        s.attributes[attrs.AUTH_RESULT] for s in capture.spans() if s.name == "auth.verify_token"
    ]
    assert results == ["bad_signature", "ok"]


async def test_health_checks_are_not_traced(traced):
    stack, capture = traced
    assert (await stack.api.get("/health")).status_code == 200
    assert not [s for s in capture.spans() if "/health" in s.name]


async def test_incoming_traceparent_is_continued(traced):
    stack, capture = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await stack.api.get(
        "/agents",
        headers={
            **stack.auth(stack.tokens["alice"]),
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        },
    )
    assert response.status_code == 200
    server = [s for s in capture.spans() if s.kind == SpanKind.SERVER]
    assert server and all(f"{s.context.trace_id:032x}" == trace_id for s in server)


async def test_eventually_helper_is_bounded():
    with pytest.raises(AssertionError, match="not met"):

        async def never() -> bool:
            return False

        await eventually(never, bool, timeout=0.05)
