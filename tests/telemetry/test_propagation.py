"""Propagation: traceparent (and sentry-trace with Sentry) in and out, baggage passed on,
and the helpers that let a webhook span link to the call that started it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from telemetry import current_traceparent, link_from_traceparent
from telemetry.otel_setup import build_propagator
from telemetry.testing import (
    FAKE_SENTRY_DSN,
    CapturingSentryTransport,
    SpanCapture,
    capture_spans,
    settings_for_tests,
)
from tests.telemetry.conftest import MiniApp, instrument

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SENTRY_TRACE_ID = "771a43a4192642f0b136d5159a501700"


def server_span(spans: list[ReadableSpan]) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is SpanKind.SERVER]
    return span


@pytest.fixture
def sentry_capture() -> Iterator[SpanCapture]:
    settings = settings_for_tests(
        traces_exporter="sentry", sentry_dsn=FAKE_SENTRY_DSN, sentry_traces_mode="span_processor"
    )
    with capture_spans(settings, sentry_transport=CapturingSentryTransport()) as capture:
        yield capture


async def test_incoming_traceparent_continues_the_trace(
    capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(capture, mini)
    async with mini.client(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01") as client:
        await client.get("/items/1")
    server = server_span(capture.spans())
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
    assert server.parent.is_remote


async def test_outgoing_calls_carry_traceparent_of_the_client_span(
    capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(capture, mini)
    async with mini.client(baggage="tenant=acme") as client:
        await client.get("/items/1")
    (headers,) = mini.outgoing_headers
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    spans = capture.spans()
    server = server_span(spans)
    (client_span,) = [s for s in spans if s.kind is SpanKind.CLIENT and s.name == "POST"]
    assert version == "00" and int(flags, 16) & 1  # sampled (bit 2: random trace id)
    assert trace_id == f"{server.context.trace_id:032x}"
    assert span_id == f"{client_span.context.span_id:016x}"
    assert headers["baggage"] == "tenant=acme"
    assert "sentry-trace" not in headers  # Sentry is not a traces backend here


async def test_an_unsampled_caller_is_respected_and_propagated(
    capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(capture, mini)
    async with mini.client(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00") as client:
        await client.get("/items/1")
    assert capture.spans() == []
    (headers,) = mini.outgoing_headers
    assert headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert int(headers["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0


async def test_with_sentry_an_unsampled_trace_still_sends_both_headers(
    sentry_capture: SpanCapture, mini: MiniApp
) -> None:
    """Unsampled requests skip the client span, never the propagation."""
    instrument(sentry_capture, mini)
    async with mini.client(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00") as client:
        await client.get("/items/1")
    assert sentry_capture.spans() == []
    (headers,) = mini.outgoing_headers
    assert headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert headers["traceparent"].endswith("-00")
    assert headers["sentry-trace"].startswith(f"{TRACE_ID}-")
    assert headers["sentry-trace"].endswith("-0")


async def test_with_sentry_outgoing_calls_carry_both_headers(
    sentry_capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(sentry_capture, mini)
    async with mini.client() as client:
        await client.get("/items/1")
    (headers,) = mini.outgoing_headers
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    assert headers["sentry-trace"] == f"{trace_id}-{span_id}-1"


async def test_with_sentry_an_incoming_sentry_trace_continues_the_trace(
    sentry_capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(sentry_capture, mini)
    async with mini.client(**{"sentry-trace": f"{SENTRY_TRACE_ID}-{PARENT_ID}-1"}) as client:
        await client.get("/items/1")
    server = server_span(sentry_capture.spans())
    assert f"{server.context.trace_id:032x}" == SENTRY_TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID


async def test_with_sentry_traceparent_wins_when_a_request_carries_both(
    sentry_capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(sentry_capture, mini)
    headers = {
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        "sentry-trace": f"{SENTRY_TRACE_ID}-{PARENT_ID}-1",
    }
    async with mini.client(**headers) as client:
        await client.get("/items/1")
    assert f"{server_span(sentry_capture.spans()).context.trace_id:032x}" == TRACE_ID


def test_sentry_trace_without_a_decision_follows_our_ratio() -> None:
    carrier = {"sentry-trace": f"{SENTRY_TRACE_ID}-{PARENT_ID}"}
    for ratio, sampled in ((1.0, True), (0.0, False)):
        context = build_propagator(sentry=True, ratio=ratio).extract(carrier)
        span_context = trace.get_current_span(context).get_span_context()
        assert span_context.is_valid and span_context.trace_flags.sampled is sampled


def test_malformed_sentry_trace_is_ignored() -> None:
    for value in ("nonsense", f"{'0' * 32}-{PARENT_ID}-1", f"{SENTRY_TRACE_ID}-xyz-1"):
        context = build_propagator(sentry=True).extract({"sentry-trace": value})
        assert not trace.get_current_span(context).get_span_context().is_valid


def test_global_propagator_is_w3c_plus_sentry_never_sentry_sdks_own(
    sentry_capture: SpanCapture,
) -> None:
    fields = propagate.get_global_textmap().fields
    assert {"traceparent", "tracestate", "baggage", "sentry-trace"} <= fields
    assert "SentryPropagator" not in repr(propagate.get_global_textmap()._propagators)  # type: ignore[attr-defined]


def test_current_traceparent_and_link_from_it(capture: SpanCapture) -> None:
    assert current_traceparent() is None
    tracer = capture.telemetry.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("calls.initiate") as call_span:
        stored = current_traceparent()
    assert stored is not None
    context = call_span.get_span_context()
    assert stored == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"

    with tracer.start_as_current_span(
        "webhooks.process", links=link_from_traceparent(stored, {"app.call.id": 7})
    ):
        pass
    webhook = capture.find("webhooks.process")[0]
    (link,) = webhook.links
    assert link.context.trace_id == context.trace_id and link.context.span_id == context.span_id
    assert dict(link.attributes or {}) == {"app.call.id": 7}
    assert webhook.context.trace_id != context.trace_id  # a new trace, linked


@pytest.mark.parametrize("value", [None, "", "garbage", f"00-{'0' * 32}-{PARENT_ID}-01"])
def test_link_from_an_absent_or_invalid_traceparent_is_empty(value: str | None) -> None:
    assert link_from_traceparent(value) == []
