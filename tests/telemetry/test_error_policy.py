"""The error policy: each decision and its reason, enrichment, backends, Sentry's hooks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer

from telemetry import attributes as attr
from telemetry import error_policy
from telemetry._backends import (
    BACKENDS,
    ErrorReport,
    LogBackend,
    NoneBackend,
    OtlpBackend,
    SentryBackend,
    build_backend,
)
from telemetry.budget import Budget
from telemetry.error_policy import (
    CaptureContext,
    Decision,
    ErrorPolicy,
    PolicyState,
    decide,
    report_errors,
)
from telemetry.settings import TelemetrySettings
from telemetry.testing import FAKE_SENTRY_DSN, CapturingSentryTransport

PHONE = "+919876543210"


def make_settings(**overrides: Any) -> TelemetrySettings:
    values: dict[str, Any] = {
        "app_env": "production",
        "sentry_dsn": "",
        "error_backend": "none",
        "error_budget_monthly": 5000,
        "dedupe_window_seconds": 60.0,
    }
    values.update(overrides)
    return TelemetrySettings(_env_file=None, **values)


class RecordingBackend:
    name = "recording"

    def __init__(self) -> None:
        self.reports: list[ErrorReport] = []

    def send(self, report: ErrorReport) -> None:
        self.reports.append(report)

    def flush(self, timeout: float) -> None:
        pass


class BrokenBackend(RecordingBackend):
    name = "broken"

    def send(self, report: ErrorReport) -> None:
        raise ConnectionError("backend down")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Domain errors shaped like the app's (telemetry reads attributes, never the message).
class NotFound(Exception):
    expected = True
    http_status = 404


class Conflict(Exception):
    http_status = 409


class BolnaServerError(Exception):
    http_status = 502
    level = "error"

    def __init__(self, detail: str, *, endpoint: str, bolna_status: int) -> None:
        super().__init__(detail)
        self.endpoint = endpoint
        self.bolna_status = bolna_status


class BolnaRateLimited(BolnaServerError):
    level = "warning"


class CallFailed(Exception):
    pass


def make_policy(backend: Any = None, **overrides: Any) -> tuple[ErrorPolicy, Any, Clock]:
    backend = backend or RecordingBackend()
    clock = Clock()
    policy = ErrorPolicy(make_settings(**overrides), backend=backend, clock=clock)
    return policy, backend, clock


@pytest.fixture
def tracer() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


@pytest.fixture
def installed() -> Iterator[RecordingBackend]:
    backend = RecordingBackend()
    error_policy.install(make_settings(), backend=backend)
    yield backend
    error_policy.uninstall()


# --- decide: one test per reason -------------------------------------------------------


def state(**overrides: Any) -> PolicyState:
    values: dict[str, Any] = {
        "sending_enabled": True,
        "dedupe_window": 60.0,
        "budget": Budget(5000),
    }
    values.update(overrides)
    return PolicyState(**values)


def ctx(**overrides: Any) -> CaptureContext:
    values: dict[str, Any] = {
        "feature": "calls",
        "level": "error",
        "fingerprint": ("calls", "CallFailed"),
        "now": 0.0,
    }
    values.update(overrides)
    return CaptureContext(**values)


@pytest.mark.parametrize(
    ("context", "policy_state", "expected"),
    [
        (ctx(), state(), ("sent", "ok")),
        (ctx(already_captured=True), state(), ("dropped", "already_captured")),
        (ctx(expected=True), state(), ("dropped", "expected")),
        (ctx(response_status=404), state(), ("dropped", "http_4xx")),
        (ctx(response_status=429, level_forced=True), state(), ("sent", "ok")),
        (ctx(response_status=503), state(), ("sent", "ok")),
        (ctx(), state(sending_enabled=False), ("logged", "environment")),
        (ctx(expected=True), state(sending_enabled=False), ("dropped", "expected")),
        (ctx(level="warning"), state(budget=Budget(0)), ("dropped", "budget_warning")),
        (ctx(level="fatal"), state(budget=Budget(0)), ("sent", "ok")),
    ],
)
def test_decide_gives_each_reason(
    context: CaptureContext, policy_state: PolicyState, expected: tuple[str, str]
) -> None:
    decision = decide(context, policy_state)
    assert (decision.outcome, decision.reason) == expected
    assert decision.fingerprint == context.fingerprint


def test_repeats_within_the_window_are_collapsed_and_counted_on_the_next_one() -> None:
    policy_state = state(dedupe_window=60.0)
    assert decide(ctx(now=0.0), policy_state) == Decision("sent", "ok", "error", ctx().fingerprint)
    duplicates = [decide(ctx(now=t), policy_state) for t in (1.0, 30.0, 59.9)]
    assert [(d.outcome, d.reason, d.repeat_count) for d in duplicates] == [
        ("dropped", "duplicate", 1),
        ("dropped", "duplicate", 2),
        ("dropped", "duplicate", 3),
    ]
    other = decide(ctx(now=10.0, fingerprint=("calls", "Other")), policy_state)
    assert other.outcome == "sent"  # another cause is not a duplicate
    after = decide(ctx(now=60.0), policy_state)
    assert (after.outcome, after.repeat_count) == ("sent", 3)
    again = decide(ctx(now=61.0), policy_state)
    assert (again.outcome, again.repeat_count) == ("dropped", 1)


def test_dedupe_memory_is_bounded() -> None:
    policy_state = state(max_fingerprints=100)
    for i in range(1000):
        decide(ctx(now=float(i), fingerprint=("f", str(i))), policy_state)
    assert len(policy_state.seen) <= 100
    assert ("f", "999") in policy_state.seen


# --- capture_error: what reaches the backend -------------------------------------------------


def test_expected_errors_and_client_4xx_never_reach_the_backend() -> None:
    policy, backend, _ = make_policy()
    assert policy.capture_error(NotFound("no agent 7"), feature="calls").reason == "expected"
    assert policy.capture_error(Conflict("dup"), feature="calls").reason == "http_4xx"
    truthy = NotFound("x")
    truthy.expected = "yes"  # type: ignore[assignment]  # only `True` means expected
    assert policy.capture_error(truthy, feature="calls").reason == "http_4xx"
    assert backend.reports == []
    assert policy.status()["dropped"] == {"expected": 1, "http_4xx": 2}


def test_an_explicit_level_reports_a_4xx() -> None:
    policy, backend, _ = make_policy()
    decision = policy.capture_error(Conflict("Bolna said 401"), feature="bolna", level="error")
    assert decision.outcome == "sent"
    assert len(backend.reports) == 1


def test_the_level_comes_from_the_exception_unless_given() -> None:
    policy, _, _ = make_policy()
    limited = BolnaRateLimited("slow down", endpoint="/call", bolna_status=429)
    assert policy.capture_error(limited, feature="bolna").level == "warning"
    assert policy.capture_error(CallFailed("x"), feature="calls").level == "error"
    assert policy.capture_error(CallFailed("y"), feature="credits", level="critical").level == (
        "fatal"
    )


def test_outside_production_errors_are_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    policy, backend, _ = make_policy(app_env="development")
    with caplog.at_level(logging.ERROR, logger="telemetry.errors"):
        decision = policy.capture_error(CallFailed(f"failed for {PHONE}"), feature="calls")
    assert (decision.outcome, decision.reason) == ("logged", "environment")
    assert backend.reports == []
    [record] = [r for r in caplog.records if r.name == "telemetry.errors"]
    assert "CallFailed" in record.getMessage()
    assert "9876543" not in record.getMessage()


def test_sent_reports_are_enriched_and_scrubbed(
    tracer: tuple[Tracer, InMemorySpanExporter],
) -> None:
    policy, backend, _ = make_policy()
    exc = BolnaServerError(
        f"Bolna failed with 503 calling {PHONE}", endpoint="/call", bolna_status=503
    )
    with tracer[0].start_as_current_span("call.initiate") as span:
        policy.capture_error(
            exc,
            feature="call_initiation",
            call_source="campaign",
            campaign_id="cmp-9",
            call_id=42,
            recipient_phone=PHONE,
            api_key="sk-live-123",
        )
    [report] = backend.reports
    assert report.tags == {
        "feature": "call_initiation",
        "call_source": "campaign",
        "campaign_id": "cmp-9",
        "error_type": "BolnaServerError",
        "http_status_class": "5xx",
        "bolna_endpoint": "/call",
    }
    assert report.context == {
        "call_source": "campaign",
        "campaign_id": "cmp-9",
        "call_id": 42,
        "recipient_phone": "+********3210",
        "api_key": "[REDACTED]",
    }
    assert report.message == "BolnaServerError: Bolna failed with 503 calling +********3210"
    assert report.fingerprint == (
        "call_initiation",
        f"{__name__}.BolnaServerError",
        "/call",
        "503",
    )
    assert report.trace_id == span.get_span_context().trace_id
    assert report.span_id == span.get_span_context().span_id


def test_fingerprints_group_by_cause_not_by_message() -> None:
    policy, backend, _ = make_policy(dedupe_window_seconds=0)
    for detail, status in [("boom 1", 503), ("boom 2 other text", 503), ("boom", 500)]:
        policy.capture_error(
            BolnaServerError(detail, endpoint="/call", bolna_status=status), feature="bolna"
        )
    fingerprints = [r.fingerprint[2:] for r in backend.reports]
    assert fingerprints == [("/call", "503"), ("/call", "503"), ("/call", "500")]


def test_one_exception_is_reported_once_even_when_captured_again_or_translated() -> None:
    policy, backend, _ = make_policy(dedupe_window_seconds=0)
    inner = BolnaServerError("down", endpoint="/call", bolna_status=503)
    assert policy.capture_error(inner, feature="bolna").outcome == "sent"
    assert policy.capture_error(inner, feature="call_initiation").reason == "already_captured"
    try:
        raise CallFailed("call failed") from inner
    except CallFailed as outer:
        assert policy.capture_error(outer, feature="http").reason == "already_captured"
    # A translated *expected* error was not a failure: its translation is reported.
    try:
        raise CallFailed("lookup blew up") from NotFound("x")
    except CallFailed as outer:
        policy.capture_error(outer.__cause__, feature="calls")  # type: ignore[arg-type]
        assert policy.capture_error(outer, feature="calls").outcome == "sent"
    assert len(backend.reports) == 2


def test_a_storm_through_the_policy_stays_within_budget_and_fatal_always_passes() -> None:
    policy, backend, _ = make_policy(error_budget_monthly=100, dedupe_window_seconds=0)
    outcomes = [
        policy.capture_error(CallFailed(str(i)), feature=f"f{i % 7}", level=level)
        for i in range(1000)
        for level in ("error", "warning", "fatal" if i % 100 == 0 else "info")
    ]
    sent = [d for d in outcomes if d.outcome == "sent"]
    assert len([d for d in sent if d.level != "fatal"]) <= 90
    assert all(d.outcome == "sent" for d in outcomes if d.level == "fatal")
    assert len(backend.reports) == len(sent) <= 100
    assert policy.status()["budget"]["used"] == len(sent)


def test_every_decision_is_counted_and_recorded_on_the_span(
    tracer: tuple[Tracer, InMemorySpanExporter],
) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    policy = ErrorPolicy(make_settings(), backend=NoneBackend(), meter_provider=meter_provider)
    with tracer[0].start_as_current_span("webhook.process"):
        policy.capture_error(NotFound("x"), feature="webhook")
        policy.capture_error(CallFailed("y"), feature="webhook")
        policy.capture_error(CallFailed("y"), feature="webhook")
    [span] = tracer[1].get_finished_spans()

    events = [dict(e.attributes or {}) for e in span.events if e.name == "error_policy.decision"]
    assert [(e[attr.DECISION_OUTCOME], e[attr.DECISION_REASON]) for e in events] == [
        ("dropped", "expected"),
        ("sent", "ok"),
        ("dropped", "duplicate"),
    ]
    assert all(e[attr.FEATURE] == "webhook" and e["exception.type"] for e in events)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes[attr.ERROR_TYPE] == "CallFailed"

    points = {
        (p.attributes["outcome"], p.attributes["reason"]): p.value for p in metric_points(reader)
    }
    assert points == {("dropped", "expected"): 1, ("sent", "ok"): 1, ("dropped", "duplicate"): 1}
    meter_provider.shutdown()


def metric_points(reader: InMemoryMetricReader) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "app.telemetry.errors"
        for point in metric.data.data_points
    ]


def test_an_expected_error_does_not_mark_the_span_as_failed(
    tracer: tuple[Tracer, InMemorySpanExporter],
) -> None:
    policy, _, _ = make_policy()
    with tracer[0].start_as_current_span("lookup"):
        policy.capture_error(NotFound("x"), feature="calls")
    [span] = tracer[1].get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET


def test_a_broken_backend_never_breaks_the_caller_in_production() -> None:
    policy, _, _ = make_policy(backend=BrokenBackend())
    decision = policy.capture_error(CallFailed("x"), feature="calls")
    assert decision.outcome == "sent"
    assert policy.status()["backend_errors"] == 1


def test_under_app_env_test_telemetry_bugs_surface() -> None:
    policy, _, _ = make_policy(backend=BrokenBackend(), app_env="test", send_environments="test")
    with pytest.raises(ConnectionError):
        policy.capture_error(CallFailed("x"), feature="calls")
    with pytest.raises(ValueError, match="unknown level"):
        policy.capture_message("x", feature="calls", level="loud")


def test_an_unknown_level_in_production_is_reported_as_an_internal_drop() -> None:
    policy, backend, _ = make_policy()
    decision = policy.capture_message("x", feature="calls", level="loud")
    assert (decision.outcome, decision.reason) == ("dropped", "internal_error")
    assert backend.reports == []
    assert policy.status()["dropped"] == {"internal_error": 1}


def test_an_unknown_level_declared_by_an_exception_still_reports_it() -> None:
    policy, backend, _ = make_policy(app_env="test", send_environments="test")
    odd = CallFailed("x")
    odd.level = "loud"  # type: ignore[attr-defined]
    assert policy.capture_error(odd, feature="calls").level == "error"
    assert len(backend.reports) == 1


def test_messages_are_fingerprinted_by_their_text() -> None:
    policy, backend, _ = make_policy()
    first = policy.capture_message(
        "credit balance went negative", feature="credits", level="warning"
    )
    second = policy.capture_message(
        "credit balance went negative", feature="credits", level="warning", user_id=2
    )
    assert first.fingerprint == ("credits", "message", "credit balance went negative")
    assert second.reason == "duplicate"
    [report] = backend.reports
    assert report.exception is None and report.level == "warning"


# --- module-level API ------------------------------------------------------------------


def test_install_replaces_the_policy_and_status_reports_it(installed: RecordingBackend) -> None:
    error_policy.capture_error(CallFailed("x"), feature="calls")
    error_policy.capture_error(NotFound("x"), feature="calls")
    report = error_policy.status()
    assert report["error_backend"] == "recording"
    assert report["environment"] == "production"
    assert report["sending"] is True
    assert report["dropped"] == {"expected": 1}
    assert report["budget"] == {
        "month": report["budget"]["month"],
        "monthly": 5000,
        "used": 1,
        "remaining": 4999,
        "by_level": {"fatal": 0, "error": 1, "warning": 0, "info": 0, "debug": 0},
        "unsynced": 1,
    }
    assert len(installed.reports) == 1


def test_without_install_captures_fall_back_to_a_logging_policy() -> None:
    error_policy.uninstall()
    assert isinstance(error_policy.get_policy().backend, LogBackend)
    error_policy.uninstall()


async def test_sync_budget_uses_the_installed_store() -> None:
    class Store:
        def __init__(self) -> None:
            self.seen: list[dict[str, int]] = []

        async def add_and_read(self, month: str, deltas: Any) -> dict[str, int]:
            self.seen.append(dict(deltas))
            return {"error": 4999}

    store = Store()
    error_policy.install(make_settings(), backend=NoneBackend(), budget_store=store)
    try:
        error_policy.capture_error(CallFailed("x"), feature="calls")
        await error_policy.sync_budget()
        assert store.seen == [{"error": 1}]
        other = error_policy.capture_error(CallFailed("y"), feature="webhook")
        assert other.reason == "budget_error"
    finally:
        error_policy.uninstall()


def test_report_errors_as_a_decorator_and_context_manager(installed: RecordingBackend) -> None:
    @report_errors("campaign_dispatch", campaign_id="c1")
    def dispatch() -> None:
        raise CallFailed("dispatch")

    with pytest.raises(CallFailed):
        dispatch()
    with pytest.raises(CallFailed), report_errors("webhook", delivery_id=5):
        raise CallFailed("webhook")
    with report_errors("scheduler", reraise=False):
        raise CallFailed("swallowed")

    @report_errors("ok")
    def fine(x: int) -> int:
        return x * 2

    assert fine(21) == 42
    assert dispatch.__name__ == "dispatch"
    assert [(r.feature, dict(r.context)) for r in installed.reports] == [
        ("campaign_dispatch", {"campaign_id": "c1"}),
        ("webhook", {"delivery_id": 5}),
        ("scheduler", {}),
    ]


async def test_report_errors_on_async_code(installed: RecordingBackend) -> None:
    @report_errors("campaign_dispatch")
    async def dispatch() -> None:
        raise CallFailed("dispatch")

    with pytest.raises(CallFailed):
        await dispatch()
    with pytest.raises(CallFailed):
        async with report_errors("webhook"):
            raise CallFailed("webhook")
    assert [r.feature for r in installed.reports] == ["campaign_dispatch", "webhook"]


# --- backends ------------------------------------------------------------------------------


def test_backends_are_built_by_name_and_unknown_names_list_the_valid_ones() -> None:
    settings = make_settings()
    assert isinstance(build_backend("none", settings), NoneBackend)
    assert isinstance(build_backend("LOG", settings), LogBackend)
    assert isinstance(build_backend("sentry", settings), SentryBackend)
    otlp = build_backend("otlp", settings)
    assert isinstance(otlp, OtlpBackend)
    otlp.shutdown()
    with pytest.raises(ValueError, match="log, none, otlp, sentry"):
        build_backend("datadog", settings)
    assert set(BACKENDS) == {"sentry", "otlp", "log", "none"}


def test_the_log_backend_writes_one_scrubbed_line(caplog: pytest.LogCaptureFixture) -> None:
    policy, _, _ = make_policy(backend=LogBackend())
    with caplog.at_level(logging.INFO, logger="telemetry.errors"):
        policy.capture_error(CallFailed(f"no answer from {PHONE}"), feature="calls", token="abc")
    [record] = caplog.records
    line = record.getMessage()
    assert "\n" not in line
    assert "feature=calls" in line and "outcome=sent" in line
    assert "9876543" not in line and "abc" not in line


def test_the_otlp_backend_emits_a_log_record_with_the_trace_context(
    tracer: tuple[Tracer, InMemorySpanExporter],
) -> None:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    backend = OtlpBackend(make_settings(), exporter=exporter)
    policy = ErrorPolicy(make_settings(), backend=backend)
    with tracer[0].start_as_current_span("call.initiate") as span:
        policy.capture_error(
            BolnaServerError(f"503 for {PHONE}", endpoint="/call", bolna_status=503),
            feature="call_initiation",
            call_id=7,
        )
    backend.flush(timeout=2.0)
    [readable] = exporter.get_finished_logs()
    record = readable.log_record
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id
    assert record.severity_text == "ERROR"
    assert record.body == "BolnaServerError: 503 for +********3210"
    attributes = dict(record.attributes or {})
    assert attributes["exception.type"] == f"{__name__}.BolnaServerError"
    assert attributes["exception.message"] == "503 for +********3210"
    assert "BolnaServerError" in str(attributes["exception.stacktrace"])
    assert attributes[attr.FEATURE] == "call_initiation"
    assert attributes[attr.BOLNA_ENDPOINT] == "/call"
    assert attributes["app.call_id"] == 7
    assert "9876543" not in json.dumps({k: str(v) for k, v in attributes.items()})
    backend.shutdown()


# --- Sentry ----------------------------------------------------------------------------


@pytest.fixture
def sentry_transport() -> Iterator[CapturingSentryTransport]:
    transport = CapturingSentryTransport()
    sentry_sdk.init(
        dsn=FAKE_SENTRY_DSN,
        transport=transport,
        default_integrations=False,
        integrations=[],
        before_send=error_policy.sentry_before_send,
        before_send_transaction=error_policy.sentry_before_send_transaction,
    )
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
def sentry_policy() -> Iterator[ErrorPolicy]:
    policy = error_policy.install(make_settings(), backend=SentryBackend())
    yield policy
    error_policy.uninstall()


def test_the_sentry_backend_sends_tags_level_fingerprint_and_trace_without_pii(
    sentry_transport: CapturingSentryTransport,
    sentry_policy: ErrorPolicy,
    tracer: tuple[Tracer, InMemorySpanExporter],
) -> None:
    customer_phone = PHONE  # a local: sentry-sdk renders frame locals into the event
    with tracer[0].start_as_current_span("call.initiate") as span:
        try:
            raise BolnaServerError(
                f"Bolna failed with 503 for {customer_phone}", endpoint="/call", bolna_status=503
            )
        except BolnaServerError as exc:
            error_policy.capture_error(
                exc, feature="call_initiation", call_source="direct", call_id=42, token="sekrit"
            )
    [event] = sentry_transport.events
    assert event["level"] == "error"
    assert event["tags"] == {
        "feature": "call_initiation",
        "call_source": "direct",
        "error_type": "BolnaServerError",
        "http_status_class": "5xx",
        "bolna_endpoint": "/call",
    }
    assert event["fingerprint"] == [
        "call_initiation",
        f"{__name__}.BolnaServerError",
        "/call",
        "503",
    ]
    context = span.get_span_context()
    assert event["contexts"]["trace"]["trace_id"] == format(context.trace_id, "032x")
    assert event["contexts"]["trace"]["span_id"] == format(context.span_id, "016x")
    assert event["contexts"]["app"] == {
        "call_source": "direct",
        "call_id": 42,
        "token": "[REDACTED]",
    }
    serialized = json.dumps(event)
    assert "9876543" not in serialized and "sekrit" not in serialized
    assert "+********3210" in serialized  # the message is there, masked


def test_a_message_reaches_sentry_at_its_level(
    sentry_transport: CapturingSentryTransport, sentry_policy: ErrorPolicy
) -> None:
    error_policy.capture_message("auth failure burst", feature="auth", level="warning")
    [event] = sentry_transport.events
    assert event["level"] == "warning"
    assert event["tags"]["feature"] == "auth"
    assert event["fingerprint"] == ["auth", "message", "auth failure burst"]


def test_sentrys_own_events_go_through_the_same_policy(
    sentry_transport: CapturingSentryTransport, sentry_policy: ErrorPolicy
) -> None:
    sentry_sdk.capture_exception(NotFound("no such agent"))  # expected: dropped
    try:
        raise CallFailed(f"crashed for {PHONE}")
    except CallFailed as exc:
        sentry_sdk.capture_exception(exc)
    [event] = sentry_transport.events
    assert event["tags"]["feature"] == "unhandled"
    assert event["tags"]["error_type"] == "CallFailed"
    assert "9876543" not in json.dumps(event)
    assert sentry_policy.status()["dropped"] == {"expected": 1}


def test_an_error_we_captured_is_not_sent_again_by_sentrys_integrations(
    sentry_transport: CapturingSentryTransport, sentry_policy: ErrorPolicy
) -> None:
    exc = CallFailed("boom")
    error_policy.capture_error(exc, feature="http")
    sentry_sdk.capture_exception(exc)  # e.g. the Starlette integration, later
    assert len(sentry_transport.events) == 1
    assert sentry_policy.status()["dropped"] == {"already_captured": 1}


def test_sentry_events_outside_production_are_dropped(
    sentry_transport: CapturingSentryTransport,
) -> None:
    error_policy.install(make_settings(app_env="development"), backend=SentryBackend())
    try:
        sentry_sdk.capture_exception(CallFailed("x"))
        error_policy.capture_error(CallFailed("y"), feature="calls")
    finally:
        error_policy.uninstall()
    assert sentry_transport.events == []


def test_transactions_are_scrubbed() -> None:
    event = {
        "type": "transaction",
        "transaction": f"/calls/{PHONE}",
        "spans": [
            {
                "span_id": "1234567890123456",
                "data": {"http.request.header.authorization": "Bearer x"},
            }
        ],
    }
    out: Any = error_policy.sentry_before_send_transaction(event, {})  # type: ignore[arg-type]
    assert out is not None
    assert out["transaction"] == "/calls/+********3210"
    assert out["spans"][0] == {
        "span_id": "1234567890123456",
        "data": {"http.request.header.authorization": "[REDACTED]"},
    }


def test_the_sentry_backend_falls_back_to_logging_when_sentry_is_not_initialised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not sentry_sdk.is_initialized()
    policy, _, _ = make_policy(backend=SentryBackend())
    with caplog.at_level(logging.ERROR, logger="telemetry.errors"):
        assert policy.capture_error(CallFailed("x"), feature="calls").outcome == "sent"
    assert any("CallFailed" in r.getMessage() for r in caplog.records)
