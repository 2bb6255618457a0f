"""The exporters' circuit breaker: while a destination is down, spans are dropped and
counted instead of queued and retried; when it is back, export resumes."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry._breaker import (
    BreakerState,
    CircuitBreaker,
    GuardedBatchSpanProcessor,
    GuardedLogRecordExporter,
    GuardedSpanExporter,
    accepts,
    backoff_s,
    begin_export,
    end_export,
    fail_fast_session,
    queue_size,
)
from telemetry.otel_setup import configure
from telemetry.testing import settings_for_tests
from tests.e2e.otlp_receiver import OtlpReceiver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Failing(SpanExporter):
    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return SpanExportResult.FAILURE


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the decision ------------------------------------------------------------------------


def test_a_failure_opens_for_a_back_off_that_doubles_up_to_the_maximum() -> None:
    state = BreakerState(first_backoff_s=5.0, max_backoff_s=60.0)
    assert accepts(state, 0.0) and begin_export(state, 0.0)
    backoffs = []
    now = 0.0
    for _ in range(6):
        end_export(state, False, now)
        backoffs.append(backoff_s(state))
        assert not accepts(state, now) and not begin_export(state, now)
        now = state.open_until
        assert accepts(state, now)  # half-open: queue again, the next batch probes
        assert begin_export(state, now)
        assert not accepts(state, now)  # probing: nothing queued behind the probe
    assert backoffs == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    end_export(state, True, now)
    assert state.failures == 0 and accepts(state, now) and backoff_s(state) == 0.0


def test_an_open_breaker_drops_batches_without_calling_the_exporter() -> None:
    clock = Clock()
    breaker = CircuitBreaker("otlp traces", "http://u:p@collector:4318/v1/traces?k=1", clock=clock)
    inner = Failing()
    exporter = GuardedSpanExporter(inner, breaker)
    spans = [ReadableSpan(name=f"s{i}") for i in range(3)]
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert inner.calls == 1
    assert breaker.status() == {
        "state": "open",
        "exported": 0,
        "failed": 3,
        "dropped": 3,
        "backoff_s": 5.0,
    }
    assert breaker.endpoint == "http://collector:4318/v1/traces"  # no credentials in logs
    clock.now += 5.0
    assert breaker.state == "half-open"
    exporter.export(spans)
    assert inner.calls == 2 and breaker.status()["backoff_s"] == 10.0


def test_an_exporter_that_raises_counts_as_a_failure_and_never_raises() -> None:
    breaker = CircuitBreaker("otlp traces", clock=Clock())
    exporter = GuardedSpanExporter(Failing(RuntimeError("boom")), breaker)
    assert exporter.export([ReadableSpan(name="s")]) is SpanExportResult.FAILURE
    assert breaker.state == "open" and breaker.failed == 1


def test_failures_are_reported_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = CircuitBreaker("otlp traces", "http://collector:4318/v1/traces", clock=clock)
    exporter = GuardedSpanExporter(Failing(), breaker)
    with caplog.at_level(logging.WARNING, logger="telemetry._breaker"):
        for _ in range(20):
            exporter.export([ReadableSpan(name="s")] * 2)
            clock.now += 3.0
        breaker.drop(5)
        clock.now += 60.0
        exporter.export([ReadableSpan(name="s")] * 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "telemetry._breaker"]
    assert len(messages) == 2
    assert "otlp traces export to http://collector:4318/v1/traces failing" in messages[0]
    assert "your code still runs" in messages[0]
    assert f"{breaker.dropped} dropped in all" in messages[1]


def test_log_records_go_through_the_breaker_too() -> None:
    breaker = CircuitBreaker("otlp error reports", clock=Clock())
    inner = InMemoryLogRecordExporter()
    exporter = GuardedLogRecordExporter(inner, breaker)
    assert exporter.export([]) is LogRecordExportResult.SUCCESS
    assert breaker.state == "closed"


# --- against a real loopback collector ---------------------------------------------------


@pytest.fixture
def port() -> Iterator[int]:
    yield _closed_port()


def test_spans_are_dropped_and_counted_while_the_collector_is_down_and_flow_when_it_is_back(
    port: int,
) -> None:
    clock = Clock()
    breaker = CircuitBreaker("otlp traces", f"http://127.0.0.1:{port}/v1/traces", clock=clock)
    otlp = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=5.0, session=fail_fast_session()
    )
    processor = GuardedBatchSpanProcessor(
        GuardedSpanExporter(otlp, breaker),
        breaker,
        schedule_delay_millis=60_000,  # exports only when the test flushes
        max_queue_size=64,
        max_export_batch_size=64,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")

    def spans(prefix: str, count: int) -> None:
        for index in range(count):
            tracer.start_span(f"{prefix}-{index}").end()

    try:
        spans("down", 3)
        began = time.monotonic()
        processor.force_flush(5_000)  # connection refused: the batch fails, the breaker opens
        assert time.monotonic() - began < 1.0, "refused: no retries, no back-off sleeps"
        assert breaker.state == "open" and breaker.failed == 3
        spans("while-open", 5)  # dropped before the queue: nothing held, nothing retried
        assert breaker.dropped == 5
        with OtlpReceiver(port=port) as receiver:
            spans("still-open", 2)  # the back-off is not over: still dropped
            assert breaker.dropped == 7
            clock.now += 5.0  # the back-off ends: queue again, the next batch probes
            spans("back", 4)
            assert processor.force_flush(5_000)
            assert breaker.state == "closed"
            spans("healthy", 2)
            assert processor.force_flush(5_000)
            received = [span.name for span in receiver.spans()]
        assert sorted(received) == [
            "back-0",
            "back-1",
            "back-2",
            "back-3",
            "healthy-0",
            "healthy-1",
        ]
        assert breaker.status() == {
            "state": "closed",
            "exported": 6,
            "failed": 3,
            "dropped": 7,
            "backoff_s": 0.0,
        }
    finally:
        provider.shutdown()


def test_the_fail_fast_session_leaves_credential_provider_sessions_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert fail_fast_session() is not None
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "corp")
    assert fail_fast_session() is None


# --- configuration -------------------------------------------------------------------------


def test_every_batch_destination_has_a_breaker_reported_in_status() -> None:
    settings = settings_for_tests(traces_exporter="otlp", otlp_endpoint="http://127.0.0.1:9/")
    telemetry = configure(settings, set_global=False)
    try:
        (exporter,) = telemetry.exporters
        assert isinstance(exporter.processor, GuardedBatchSpanProcessor)
        assert exporter.processor._batch_processor._max_queue_size == 1024
        assert telemetry.status()["exports"] == {
            "otlp": {"state": "closed", "exported": 0, "failed": 0, "dropped": 0, "backoff_s": 0.0}
        }
    finally:
        telemetry.shutdown(timeout_s=1.0)


def test_standard_queue_variables_win_over_our_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    assert queue_size(1024, "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE") == 1024
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2000")
    assert queue_size(1024, "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE") == 2000
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4096")
    assert queue_size(1024, "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE") is None
    settings = settings_for_tests(traces_exporter="otlp", otlp_endpoint="http://127.0.0.1:9/")
    telemetry = configure(settings, set_global=False)
    try:
        (exporter,) = telemetry.exporters
        assert exporter.processor._batch_processor._max_queue_size == 4096  # type: ignore[attr-defined]
    finally:
        telemetry.shutdown(timeout_s=1.0)
