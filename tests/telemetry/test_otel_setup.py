"""configure(): which exporters, sampler, resource and Sentry setup each configuration builds;
the scrubbing gate; shutdown; failures; log correlation."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Sequence

import pytest
import sentry_sdk
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, StaticSampler, TraceIdRatioBased
from opentelemetry.trace import Link, SpanContext, StatusCode, TraceFlags

from telemetry import otel_setup
from telemetry._processors import ScrubbingSpanProcessor
from telemetry._sentry_transactions import SentryTransactionExporter
from telemetry.logging import JsonFormatter
from telemetry.otel_setup import EXPORTERS, configure
from telemetry.testing import (
    FAKE_SENTRY_DSN,
    CapturingSentryTransport,
    SpanCapture,
    capture_spans,
    settings_for_tests,
)

PHONE = "+14155550123"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


def gate_of(telemetry: otel_setup.Telemetry) -> ScrubbingSpanProcessor:
    provider = telemetry.tracer_provider
    processors = provider._active_span_processor._span_processors  # type: ignore[attr-defined]
    assert len(processors) == 1, "exactly one processor (the scrubbing gate) on the provider"
    assert isinstance(processors[0], ScrubbingSpanProcessor)
    return processors[0]


# --- exporters by configuration ------------------------------------------------------------


def test_sentry_otlp_mode_exports_to_the_endpoint_derived_from_the_dsn() -> None:
    settings = settings_for_tests(
        traces_exporter="sentry", sentry_dsn="https://abc123@o7.ingest.example.com/42"
    )
    telemetry = configure(settings, set_global=False, sentry_transport=CapturingSentryTransport())
    try:
        (exporter,) = telemetry.exporters
        assert exporter.name == "sentry"
        assert isinstance(exporter.processor, BatchSpanProcessor)
        assert isinstance(exporter.exporter, OTLPSpanExporter)
        expected = "https://o7.ingest.example.com/api/42/integration/otlp/v1/traces"
        assert exporter.endpoint == expected
        assert exporter.exporter._endpoint == expected
        assert exporter.exporter._client._headers["x-sentry-auth"] == "sentry sentry_key=abc123"
        assert gate_of(telemetry).processors == (exporter.processor,)
        # Sentry's own tracing stays off: OTel owns it.
        options = sentry_sdk.get_client().options
        assert options["traces_sample_rate"] is None
        assert options["instrumenter"] == "sentry"
        assert options["default_integrations"] is False
        assert options["auto_enabling_integrations"] is False
        assert options["send_default_pii"] is False
        assert options["include_local_variables"] is False
        assert set(sentry_sdk.get_client().integrations) == {"otlp"}
    finally:
        telemetry.shutdown()
    assert not sentry_sdk.is_initialized()


def test_sentry_span_processor_mode_builds_transactions_in_the_batch_thread() -> None:
    settings = settings_for_tests(
        traces_exporter="sentry", sentry_dsn=FAKE_SENTRY_DSN, sentry_traces_mode="span_processor"
    )
    telemetry = configure(settings, set_global=False, sentry_transport=CapturingSentryTransport())
    try:
        (exporter,) = telemetry.exporters
        assert exporter.name == "sentry"
        assert isinstance(exporter.processor, BatchSpanProcessor)
        assert isinstance(exporter.exporter, SentryTransactionExporter)
        assert exporter.endpoint == "https://sentry.invalid/api/1/envelope/"
        assert gate_of(telemetry).processors == (exporter.processor,)
        # The OTel sampler is the only decision: Sentry's own tracing stays off.
        options = sentry_sdk.get_client().options
        assert options["traces_sample_rate"] is None
        assert options["instrumenter"] == "sentry"
    finally:
        telemetry.shutdown()


def test_otlp_exports_to_the_collector_with_its_headers() -> None:
    settings = settings_for_tests(
        traces_exporter="otlp",
        otlp_endpoint="http://collector.test:4318/",
        otlp_headers="api-key=s3cret,x-team=calls%20team",
    )
    telemetry = configure(settings, set_global=False)
    try:
        (exporter,) = telemetry.exporters
        assert isinstance(exporter.processor, BatchSpanProcessor)
        assert isinstance(exporter.exporter, OTLPSpanExporter)
        assert exporter.exporter._endpoint == "http://collector.test:4318/v1/traces"
        headers = exporter.exporter._client._headers
        assert headers["api-key"] == "s3cret"
        assert headers["x-team"] == "calls team"
        assert not sentry_sdk.is_initialized()
    finally:
        telemetry.shutdown()


def test_console_prints_readable_lines(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = configure(settings_for_tests(traces_exporter="console"), set_global=False)
    try:
        (exporter,) = telemetry.exporters
        assert isinstance(exporter.processor, SimpleSpanProcessor)
        assert isinstance(exporter.exporter, ConsoleSpanExporter)
        with telemetry.tracer_provider.get_tracer("t").start_as_current_span("call.initiate"):
            pass
    finally:
        telemetry.shutdown()
    (line,) = capsys.readouterr().out.splitlines()
    assert "call.initiate" in line and " ms" in line


def test_none_means_no_provider_and_no_instrumentation() -> None:
    telemetry = configure(settings_for_tests(traces_exporter="none"), set_global=False)
    try:
        assert telemetry.exporters == ()
        assert telemetry.tracing is False
        assert isinstance(telemetry.tracer_provider, trace.NoOpTracerProvider)
        from fastapi import FastAPI

        app = FastAPI()
        telemetry.instrument_app(app)
        assert not getattr(app, "_telemetry_instrumented", False)
        assert telemetry.status()["traces_exporters"] == ["none"]
    finally:
        telemetry.shutdown()


def test_no_exporter_configured_means_none_without_dsn_and_sentry_with_one() -> None:
    assert settings_for_tests(traces_exporter="").resolved_traces_exporters == ["none"]
    settings = settings_for_tests(traces_exporter="", sentry_dsn=FAKE_SENTRY_DSN)
    assert settings.resolved_traces_exporters == ["sentry"]


def test_comma_list_builds_each_exporter_behind_one_gate() -> None:
    telemetry = configure(settings_for_tests(traces_exporter="otlp, console"), set_global=False)
    try:
        assert [e.name for e in telemetry.exporters] == ["otlp", "console"]
        assert gate_of(telemetry).processors == tuple(e.processor for e in telemetry.exporters)
    finally:
        telemetry.shutdown()


def test_unknown_exporter_fails_with_one_line_listing_valid_names() -> None:
    with pytest.raises(ValueError) as raised:
        configure(settings_for_tests(traces_exporter="otlp,jaeger"), set_global=False)
    message = str(raised.value)
    assert "\n" not in message
    assert "'jaeger'" in message
    for name in EXPORTERS:
        assert name in message
    assert otel_setup.current() is None


def test_unknown_exporter_fails_even_outside_tests() -> None:
    with pytest.raises(ValueError):
        configure(settings_for_tests(app_env="production", traces_exporter="zipkin"))


def test_sentry_exporter_without_dsn_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="SENTRY_DSN"):
        configure(settings_for_tests(traces_exporter="sentry"), set_global=False)


# --- sampling and resource -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("always_on", "AlwaysOnSampler"),
        ("always_off", "AlwaysOffSampler"),
        ("traceidratio", "TraceIdRatioBased{0.25}"),
        ("parentbased_always_on", "ParentBased{root:AlwaysOnSampler,"),
        ("parentbased_always_off", "ParentBased{root:AlwaysOffSampler,"),
        ("parentbased_traceidratio", "ParentBased{root:TraceIdRatioBased{0.25},"),
        ("", "ParentBased{root:TraceIdRatioBased{0.25},"),
    ],
)
def test_sampler_follows_otel_traces_sampler(name: str, expected: str) -> None:
    sampler = otel_setup.build_sampler(
        settings_for_tests(traces_sampler=name, traces_sampler_arg="0.25")
    )
    assert sampler.get_description().startswith(expected)


def test_default_ratio_is_full_outside_production_and_a_tenth_in_it() -> None:
    development = otel_setup.build_sampler(settings_for_tests(traces_sampler_arg=""))
    production = otel_setup.build_sampler(
        settings_for_tests(app_env="production", traces_sampler_arg="")
    )
    assert isinstance(development, ParentBased) and isinstance(production, ParentBased)
    assert "TraceIdRatioBased{1.0}" in development.get_description()
    assert "TraceIdRatioBased{0.1}" in production.get_description()
    assert isinstance(otel_setup.SAMPLERS["always_on"](1.0), StaticSampler)
    assert isinstance(otel_setup.SAMPLERS["traceidratio"](0.5), TraceIdRatioBased)


@pytest.mark.parametrize(
    ("sampler", "arg", "fragment"),
    [
        ("sometimes", "", "OTEL_TRACES_SAMPLER"),
        ("", "lots", "OTEL_TRACES_SAMPLER_ARG"),
        ("", "1.5", "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_bad_sampler_settings_fail_start_up(sampler: str, arg: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        configure(
            settings_for_tests(traces_sampler=sampler, traces_sampler_arg=arg), set_global=False
        )


def test_resource_names_the_service_and_this_process() -> None:
    settings = settings_for_tests(
        app_env="production", service_name="calls-api", service_version="1.2.3"
    )
    resource = otel_setup.build_resource(settings).attributes
    assert resource["service.name"] == "calls-api"
    assert resource["service.version"] == "1.2.3"
    assert resource["deployment.environment.name"] == "production"
    instance = resource["service.instance.id"]
    assert isinstance(instance, str) and len(instance) == 36
    assert otel_setup.build_resource(settings).attributes["service.instance.id"] == instance


def test_sampler_ratio_zero_exports_nothing_and_one_exports_everything() -> None:
    for ratio, expected in (("0", 0), ("1", 5)):
        with capture_spans(settings_for_tests(traces_sampler_arg=ratio)) as capture:
            tracer = capture.telemetry.tracer_provider.get_tracer("t")
            for _ in range(5):
                with tracer.start_as_current_span("work"):
                    pass
            assert len(capture.spans()) == expected


# --- lifecycle -----------------------------------------------------------------------------


def test_configure_is_idempotent_until_shutdown() -> None:
    first = configure(settings_for_tests(), set_global=False)
    assert configure(settings_for_tests(traces_exporter="console"), set_global=False) is first
    first.shutdown()
    second = configure(settings_for_tests(), set_global=False)
    try:
        assert second is not first
    finally:
        second.shutdown()


class _StuckExporter(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.wait(10)


def test_shutdown_returns_within_its_timeout_even_if_an_exporter_hangs() -> None:
    stuck = _StuckExporter()
    telemetry = configure(settings_for_tests(), span_exporters=[stuck], set_global=False)
    started = time.monotonic()
    telemetry.shutdown(timeout_s=0.3)
    elapsed = time.monotonic() - started
    stuck.release.set()
    assert elapsed < 2.0
    assert otel_setup.current() is None


def test_unexpected_failure_disables_telemetry_but_not_the_app(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(settings: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(otel_setup, "build_resource", broken)
    telemetry = configure(settings_for_tests(app_env="development", traces_exporter="console"))
    try:
        assert telemetry.tracing is False
        assert "your code still runs" in caplog.text
    finally:
        telemetry.shutdown()


def test_unexpected_failure_raises_under_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(settings: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(otel_setup, "build_resource", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        configure(settings_for_tests(app_env="test"))
    assert otel_setup.current() is None


def test_status_reports_exporters_and_error_policy() -> None:
    with capture_spans(settings_for_tests(traces_exporter="console", error_backend="log")) as c:
        status = c.telemetry.status()
        assert status["traces_exporters"] == ["console"]
        assert status["error_backend"] == "log"
        assert status["environment"] == "test"
        assert status["sending"] is False
        assert {"budget", "dropped"} <= status.keys()
        assert otel_setup.status()["traces_exporters"] == ["console"]


def test_app_tracers_follow_each_new_configuration() -> None:
    """A module-level tracer (app code) keeps working across configure/shutdown cycles."""
    app_tracer = trace.get_tracer("app.calls.service")
    for _ in range(2):
        with capture_spans(settings_for_tests()) as capture:
            with app_tracer.start_as_current_span("calls.initiate"):
                pass
            assert capture.names() == ["calls.initiate"]
    with app_tracer.start_as_current_span("after shutdown") as span:
        assert not span.is_recording()


async def test_app_tracer_decorates_async_functions() -> None:
    app_tracer = trace.get_tracer("app.webhooks")

    @app_tracer.start_as_current_span("webhook.process")
    async def process() -> str:
        return trace.get_current_span().get_span_context().trace_id.to_bytes(16).hex()

    with capture_spans(settings_for_tests()) as capture:
        trace_id = await process()
        (span,) = capture.spans()
        assert span.name == "webhook.process"
        assert f"{span.context.trace_id:032x}" == trace_id


# --- the scrubbing gate --------------------------------------------------------------------


def test_no_phone_number_or_bearer_token_reaches_an_exporter(capture: SpanCapture) -> None:
    tracer = capture.telemetry.tracer_provider.get_tracer("t")
    linked = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
        "call.initiate", links=[Link(linked, {"note": f"for {PHONE}"})]
    ) as span:
        span.set_attribute("app.call.phone", PHONE)
        span.set_attribute("http.request.header.authorization", BEARER)
        span.set_attribute("note", f"dialled {PHONE} with {BEARER}")
        span.add_event("retry", {"detail": f"to {PHONE}", "token": "abc"})
        span.set_status(StatusCode.ERROR, f"could not reach {PHONE}")
    (exported,) = capture.spans()
    text = repr(
        (
            dict(exported.attributes or {}),
            [dict(e.attributes or {}) for e in exported.events],
            [dict(link.attributes or {}) for link in exported.links],
            exported.status.description,
        )
    )
    assert "4155550123" not in text and "415555" not in text
    assert "eyJhbGciOiJIUzI1NiJ9" not in text
    assert "abc" not in str([dict(e.attributes or {}) for e in exported.events])
    assert (exported.attributes or {})["app.call.phone"].endswith("0123")


def test_a_span_that_cannot_be_scrubbed_is_dropped_not_exported_raw(
    capture: SpanCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import telemetry._processors as processors

    def broken(attrs: object) -> dict[str, object]:
        raise RuntimeError("scrubber bug")

    monkeypatch.setattr(processors, "scrub_attributes_if_changed", broken)
    with capture.telemetry.tracer_provider.get_tracer("t").start_as_current_span("x") as span:
        span.set_attribute("to", PHONE)
    assert capture.spans() == []


def test_extra_exporters_see_scrubbed_spans_like_the_configured_ones() -> None:
    memory = InMemorySpanExporter()
    telemetry = configure(settings_for_tests(), span_exporters=[memory], set_global=False)
    try:
        assert [e.name for e in telemetry.exporters] == ["extra"]
        assert gate_of(telemetry).processors[0] is telemetry.exporters[0].processor
    finally:
        telemetry.shutdown()


# --- Sentry errors carry the trace ---------------------------------------------------------


def test_sentry_error_events_carry_the_current_otel_trace_id() -> None:
    transport = CapturingSentryTransport()
    settings = settings_for_tests(
        sentry_dsn=FAKE_SENTRY_DSN, error_backend="sentry", send_environments="test"
    )
    with capture_spans(settings, sentry_transport=transport) as capture:
        tracer = capture.telemetry.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("call.initiate") as span:
            try:
                raise ConnectionError("bolna unreachable")
            except ConnectionError as exc:
                import telemetry

                telemetry.capture_error(exc, feature="call_initiation")
        trace_id = f"{span.get_span_context().trace_id:032x}"
        capture.telemetry.shutdown()
    (event,) = transport.events
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    assert transport.transactions == []


# --- logs ----------------------------------------------------------------------------------


def test_log_records_carry_trace_and_span_ids(
    capture: SpanCapture, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("app.calls")
    with caplog.at_level(logging.INFO, logger="app.calls"):
        log.info("outside")
        tracer = capture.telemetry.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("call.initiate") as span:
            log.info("inside")
    outside, inside = caplog.records
    context = span.get_span_context()
    assert inside.trace_id == f"{context.trace_id:032x}"  # type: ignore[attr-defined]
    assert inside.span_id == f"{context.span_id:016x}"  # type: ignore[attr-defined]
    assert outside.trace_id == ""  # type: ignore[attr-defined]


def test_json_logs_in_production_are_scrubbed_and_correlated(capture: SpanCapture) -> None:
    from telemetry.logging import setup_logging

    stream = io.StringIO()
    setup_logging(settings_for_tests(app_env="production", log_format=""), stream=stream)
    log = logging.getLogger("app.webhooks")
    with capture.telemetry.tracer_provider.get_tracer("t").start_as_current_span("w") as span:
        log.warning("delivery for %s failed", PHONE, extra={"authorization": BEARER})
    document = json.loads(stream.getvalue().splitlines()[-1])
    assert document["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert document["level"] == "WARNING" and document["logger"] == "app.webhooks"
    assert "4155550123" not in document["message"]
    assert document["authorization"] == "[REDACTED]"
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_a_span_with_nothing_to_scrub_is_exported_as_is() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from telemetry._processors import scrub_span

    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("clean", attributes={"app.call.id": 7}) as clean:
        clean.add_event("db.query", {"db.statement": "SELECT 1"})
    with tracer.start_as_current_span("dirty", attributes={"app.call.id": 7}) as dirty:
        dirty.add_event("db.query", {"db.statement": f"SELECT '{PHONE}'"})
    assert scrub_span(clean) is clean
    scrubbed = scrub_span(dirty)
    assert scrubbed is not dirty
    assert scrubbed.attributes == dirty.attributes
    assert PHONE not in str(dict(scrubbed.events[0].attributes or {}))


def test_backend_failure_warnings_are_let_through_once_a_minute_with_a_count() -> None:
    from telemetry.logging import OncePerInterval

    once = OncePerInterval(interval_s=60.0)

    def record(template: str) -> logging.LogRecord:
        name = "opentelemetry.sdk._shared_internal"
        return logging.LogRecord(name, logging.WARNING, __file__, 1, template, ("Span",), None)

    assert once.filter(record("Queue full, dropping %s."))
    assert not any(once.filter(record("Queue full, dropping %s.")) for _ in range(500))
    assert once.filter(record("Transient error %s encountered"))  # another message
    later = OncePerInterval(interval_s=0.0)
    later.filter(record("Queue full, dropping %s."))
    again = record("Queue full, dropping %s.")
    assert later.filter(again)
    assert again.getMessage() == "Queue full, dropping Span."
