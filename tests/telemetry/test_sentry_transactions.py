"""Span-processor mode: finished OTel spans become Sentry transactions in the batch thread
(``SentryTransactionExporter``), one per local root, children in ``spans``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from telemetry._sentry_transactions import SentryTransactionExporter, span_op, span_status
from telemetry.testing import (
    FAKE_SENTRY_DSN,
    CapturingSentryTransport,
    capture_spans,
    settings_for_tests,
)
from tests.telemetry.conftest import MiniApp, instrument

PHONE = "+14155550123"


def sentry_settings(ratio: str = "1", sql_spans: str = "events") -> Any:
    return settings_for_tests(
        traces_exporter="sentry",
        sentry_dsn=FAKE_SENTRY_DSN,
        sentry_traces_mode="span_processor",
        traces_sampler_arg=ratio,
        service_version="9.9.9",
        sql_spans=sql_spans,
    )


class Webhook:
    def __init__(self) -> None:
        self.engine: AsyncEngine = create_async_engine(
            "sqlite+aiosqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        self.app = FastAPI()

        @self.app.post("/webhooks/bolna")
        async def bolna(payload: dict[str, Any]) -> dict[str, str]:
            trace.get_current_span().set_attribute("call.recipient_phone_number", PHONE)
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT :n AS n"), {"n": 1})
                await connection.execute(text("SELECT 2"))
            return {"status": "ok"}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url="http://api.test",
        )


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    app = Webhook()
    try:
        yield app
    finally:
        await app.engine.dispose()


@pytest.mark.parametrize("sql_spans", ["events", "spans"])
@pytest.mark.parametrize(("ratio", "expected"), [("1", 1), ("0", 0)])
async def test_a_request_is_one_transaction_rooted_at_the_server_span(
    webhook: Webhook, ratio: str, expected: int, sql_spans: str
) -> None:
    """SQL statements are db spans of the transaction, from OTel spans or db.query events."""
    transport = CapturingSentryTransport()
    settings = sentry_settings(ratio, sql_spans=sql_spans)
    with capture_spans(settings, sentry_transport=transport) as capture:
        capture.telemetry.instrument_app(webhook.app)
        capture.telemetry.instrument_engine(webhook.engine)
        async with webhook.client() as client:
            response = await client.post("/webhooks/bolna", json={"to": PHONE})
            assert response.status_code == 200
        spans = capture.spans()
        capture.telemetry.shutdown()
    assert len(transport.transactions) == expected
    if not expected:
        assert spans == []
        return
    (transaction,) = transport.transactions
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    trace_id = f"{server.context.trace_id:032x}"
    assert transaction["type"] == "transaction"
    assert transaction["transaction"] == "POST /webhooks/bolna"
    assert transaction["transaction_info"] == {"source": "route"}
    assert transaction["platform"] == "python"
    assert transaction["environment"] == "test"
    assert transaction["release"] == "9.9.9"
    assert len(transaction["event_id"]) == 32
    context = transaction["contexts"]["trace"]
    assert context["trace_id"] == trace_id
    assert context["span_id"] == f"{server.context.span_id:016x}"
    assert "parent_span_id" not in context
    assert context["op"] == "http.server"
    assert context["status"] == "ok"
    assert context["data"]["http.route"] == "/webhooks/bolna"
    assert transaction["start_timestamp"] == server.start_time / 1e9
    assert transaction["timestamp"] == server.end_time / 1e9
    children = transaction["spans"]
    if sql_spans == "spans":
        assert [s["description"] for s in children] == ["SELECT", "SELECT"]
    else:
        assert [s["description"] for s in children] == ["SELECT ? AS n", "SELECT 2"]
    assert len({s["span_id"] for s in children}) == 2
    for child in children:
        assert child["trace_id"] == trace_id
        assert child["parent_span_id"] == context["span_id"]
        assert child["op"] == "db"
        assert child["status"] == "ok"
        assert child["data"]["db.operation"] == "SELECT"
        assert child["start_timestamp"] <= child["timestamp"]
        assert transaction["start_timestamp"] <= child["start_timestamp"]
        assert child["timestamp"] <= transaction["timestamp"]
    assert "4155550123" not in str(transaction)  # scrubbed (gate and before_send_transaction)


async def test_a_continued_trace_keeps_the_remote_parent(webhook: Webhook) -> None:
    transport = CapturingSentryTransport()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with capture_spans(sentry_settings(), sentry_transport=transport) as capture:
        capture.telemetry.instrument_app(webhook.app)
        async with webhook.client() as client:
            await client.post(
                "/webhooks/bolna",
                json={},
                headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
            )
        capture.telemetry.shutdown()
    (transaction,) = transport.transactions
    context = transaction["contexts"]["trace"]
    assert context["trace_id"] == trace_id
    assert context["parent_span_id"] == parent_id


async def test_an_unhandled_exception_is_an_internal_error(mini: MiniApp) -> None:
    transport = CapturingSentryTransport()
    with capture_spans(sentry_settings(), sentry_transport=transport) as capture:
        instrument(capture, mini)
        async with mini.client() as client:
            assert (await client.get("/boom")).status_code == 500
            assert (await client.get("/missing")).status_code == 404
            assert (await client.get("/items/1")).status_code == 200
        capture.telemetry.shutdown()
    boom, missing, item = transport.transactions
    assert boom["contexts"]["trace"]["status"] == "internal_error"
    assert missing["contexts"]["trace"]["status"] == "not_found"
    assert item["contexts"]["trace"]["status"] == "ok"
    assert {s["op"] for s in item["spans"]} == {"db", "http.client"}
    assert "4155550123" not in str(transport.transactions)


async def test_the_error_policy_hook_sees_every_transaction(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    transport = CapturingSentryTransport()
    with capture_spans(sentry_settings(), sentry_transport=transport) as capture:
        options = sentry_sdk.get_client().options
        hook = options["before_send_transaction"]

        def spy(event: Any, hint: Any) -> Any:
            seen.append(event["transaction"])
            return hook(event, hint)

        monkeypatch.setitem(options, "before_send_transaction", spy)
        capture.telemetry.instrument_app(webhook.app)
        async with webhook.client() as client:
            await client.post("/webhooks/bolna", json={})
        capture.telemetry.shutdown()
    assert seen == ["POST /webhooks/bolna"]
    assert len(transport.transactions) == 1


# --- the exporter on its own ---------------------------------------------------------------


def finished_spans(build: Any) -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("t"))
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.fixture
def sentry_transport() -> Any:
    transport = CapturingSentryTransport()
    sentry_sdk.init(dsn=FAKE_SENTRY_DSN, transport=transport, default_integrations=False)
    yield transport
    sentry_sdk.get_client().close(timeout=0)
    sentry_sdk.get_global_scope().set_client(None)


def two_level_trace(tracer: Any) -> None:
    with tracer.start_as_current_span("job", kind=SpanKind.INTERNAL):
        with tracer.start_as_current_span("step"), tracer.start_as_current_span("leaf"):
            pass
        with tracer.start_as_current_span("other", kind=SpanKind.CLIENT):
            pass


def test_children_in_an_earlier_batch_join_their_root(sentry_transport: Any) -> None:
    spans = finished_spans(two_level_trace)
    *children, root = spans
    assert root.name == "job"
    exporter = SentryTransactionExporter()
    assert exporter.export(children) is SpanExportResult.SUCCESS
    assert sentry_transport.transactions == []
    exporter.export([root])
    (transaction,) = sentry_transport.transactions
    assert transaction["contexts"]["trace"]["op"] == "function"
    assert sorted(s["description"] for s in transaction["spans"]) == ["leaf", "other", "step"]
    assert exporter.dropped == 0 and exporter.sent == 1


def test_children_whose_root_never_comes_are_dropped_after_the_grace(
    sentry_transport: Any,
) -> None:
    *children, _root = finished_spans(two_level_trace)
    exporter = SentryTransactionExporter(grace_s=0.0)
    exporter.export(children)
    exporter.export([])
    assert exporter.dropped == len(children)
    assert sentry_transport.transactions == []


def test_waiting_spans_are_bounded(sentry_transport: Any) -> None:
    exporter = SentryTransactionExporter(max_pending_traces=1)
    first = finished_spans(two_level_trace)[:-1]
    second = finished_spans(two_level_trace)[:-1]
    exporter.export(first)
    exporter.export(second)
    assert exporter.dropped == len(second)


def test_two_local_roots_in_one_trace_are_two_transactions(sentry_transport: Any) -> None:
    def build(tracer: Any) -> None:
        with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as server:
            pass
        remote = trace.NonRecordingSpan(
            trace.SpanContext(
                server.get_span_context().trace_id,
                server.get_span_context().span_id,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
        with (
            tracer.start_as_current_span(
                "webhook", context=trace.set_span_in_context(remote), kind=SpanKind.SERVER
            ),
            tracer.start_as_current_span("db"),
        ):
            pass

    SentryTransactionExporter().export(finished_spans(build))
    request, webhook = sorted(sentry_transport.transactions, key=lambda t: t["transaction"])
    assert request["spans"] == [] and len(webhook["spans"]) == 1
    assert webhook["contexts"]["trace"]["parent_span_id"] == request["contexts"]["trace"]["span_id"]


def test_status_and_op_mapping() -> None:
    def build(tracer: Any) -> None:
        with tracer.start_as_current_span("failed") as span:
            span.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span(
            "GET", kind=SpanKind.CLIENT, attributes={"http.request.method": "GET"}
        ) as span:
            span.set_attribute("http.response.status_code", 429)
        with tracer.start_as_current_span(
            "POST", kind=SpanKind.SERVER, attributes={"http.response.status_code": 503}
        ) as span:
            span.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("SELECT", attributes={"db.system": "postgresql"}):
            pass

    failed, client, server, sql = finished_spans(build)
    assert (span_op(failed), span_status(failed)) == ("function", "internal_error")
    assert (span_op(client), span_status(client)) == ("http.client", "resource_exhausted")
    assert (span_op(server), span_status(server)) == ("http.server", "unavailable")
    assert (span_op(sql), span_status(sql)) == ("db", "ok")


def test_the_exporter_never_raises(monkeypatch: pytest.MonkeyPatch, sentry_transport: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("transport down")

    monkeypatch.setattr(sentry_transport, "capture_envelope", broken)
    exporter = SentryTransactionExporter()
    spans = finished_spans(two_level_trace)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.dropped == len(spans)


def test_without_an_initialised_client_transactions_are_dropped() -> None:
    assert not sentry_sdk.is_initialized()
    exporter = SentryTransactionExporter()
    spans = finished_spans(two_level_trace)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.dropped == len(spans)


def test_a_full_transport_queue_is_waited_for_within_a_bound(sentry_transport: Any) -> None:
    checks: list[bool] = []

    def is_healthy() -> bool:
        checks.append(True)
        return len(checks) > 3  # full for the first three checks

    sentry_transport.is_healthy = is_healthy
    SentryTransactionExporter(max_wait_s=5.0).export(finished_spans(two_level_trace))
    assert len(sentry_transport.transactions) == 1 and len(checks) == 4

    checks.clear()
    sentry_transport.is_healthy = lambda: False  # never drains: give up after max_wait_s
    began = time.monotonic()
    SentryTransactionExporter(max_wait_s=0.05).export(finished_spans(two_level_trace))
    assert time.monotonic() - began < 1.0
    assert len(sentry_transport.transactions) == 2  # handed over anyway: the sdk decides
