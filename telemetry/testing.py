"""Test helpers: spans in memory and Sentry envelopes in a list, no network.

    from telemetry.testing import capture_spans, settings_for_tests

    with capture_spans(settings_for_tests(traces_sampler_arg="1.0")) as capture:
        capture.telemetry.instrument_app(app)
        ... drive the app ...
        assert "POST /calls" in capture.names()

    transport = CapturingSentryTransport()
    settings = settings_for_tests(
        traces_exporter="sentry", sentry_dsn=FAKE_SENTRY_DSN, sentry_traces_mode="span_processor"
    )
    with capture_spans(settings, sentry_transport=transport):
        ...
    assert len(transport.transactions) == 1

``capture_spans`` configures telemetry afresh (a new provider with an in-memory
exporter behind the scrubbing processor) and shuts it down on exit, uninstrumenting
everything, so the next test starts clean. Use it as a pytest fixture:

    @pytest.fixture
    def capture():
        with capture_spans() as capture:
            yield capture
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from telemetry import _tap
from telemetry.logging import JsonFormatter, TextFormatter
from telemetry.otel_setup import Telemetry, configure, current
from telemetry.settings import TelemetrySettings

FAKE_SENTRY_DSN: Final = "https://public@sentry.invalid/1"

__all__ = [
    "FAKE_SENTRY_DSN",
    "CapturingSentryTransport",
    "SpanCapture",
    "capture_spans",
    "observe_exports",
    "render_log_record",
    "settings_for_tests",
]


def settings_for_tests(**overrides: Any) -> TelemetrySettings:
    """Settings for tests: APP_ENV=test, no exporter, every trace sampled, no Sentry, no .env."""
    values: dict[str, Any] = {
        "app_env": "test",
        "traces_exporter": "none",
        "traces_sampler": "parentbased_traceidratio",
        "traces_sampler_arg": "1.0",
        "sentry_dsn": "",
        "log_format": "text",
    }
    values.update(overrides)
    return TelemetrySettings(_env_file=None, **values)


class SpanCapture:
    """The spans a test produced, finished and scrubbed exactly as an exporter gets them."""

    def __init__(self, telemetry: Telemetry, exporter: InMemorySpanExporter) -> None:
        self.telemetry = telemetry
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        self.telemetry.force_flush()
        return list(self.exporter.get_finished_spans())

    def names(self) -> list[str]:
        return [span.name for span in self.spans()]

    def find(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def clear(self) -> None:
        self.exporter.clear()


@contextmanager
def capture_spans(
    settings: TelemetrySettings | None = None,
    *,
    set_global: bool = True,
    sentry_transport: Transport | None = None,
    budget_store: Any = None,
) -> Iterator[SpanCapture]:
    """Configure telemetry with an in-memory exporter; shut it down on exit."""
    existing = current()
    if existing is not None:
        raise RuntimeError("telemetry is already configured: shut it down before capture_spans()")
    exporter = InMemorySpanExporter()
    telemetry = configure(
        settings if settings is not None else settings_for_tests(),
        span_exporters=[exporter],
        set_global=set_global,
        sentry_transport=sentry_transport,
        budget_store=budget_store,
    )
    try:
        yield SpanCapture(telemetry, exporter)
    finally:
        telemetry.shutdown(timeout_s=2.0)


class CapturingSentryTransport(Transport):
    """A sentry-sdk transport that keeps envelopes instead of sending them.

    ``dsn`` should match the one given to sentry-sdk: its span processor reads the
    DSN from the transport.
    """

    def __init__(self, dsn: str = FAKE_SENTRY_DSN) -> None:
        super().__init__({"dsn": dsn})
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def _payloads(self, item_type: str) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == item_type and item.payload.json is not None
        ]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Error and message events."""
        return self._payloads("event")

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return self._payloads("transaction")


@contextmanager
def observe_exports(
    observer: _tap.Observer | None = None,
) -> Iterator[list[tuple[str, object]]]:
    """Everything handed to an exporter, error backend or Sentry while the block runs.

    Yields a list of ``(kind, payload)`` (see ``telemetry._tap`` for the kinds); with
    ``observer`` given, calls it instead of collecting (the list stays empty).
    """
    seen: list[tuple[str, object]] = []

    def collect(kind: str, payload: object) -> None:
        seen.append((kind, payload))

    chosen = observer if observer is not None else collect
    _tap.observers.append(chosen)
    try:
        yield seen
    finally:
        _tap.observers.remove(chosen)


_EXPORT_FORMATTERS: Final = (JsonFormatter(), TextFormatter())


def render_log_record(record: Any) -> list[str]:
    """A log record as each production formatter would write it (JSON lines, text)."""
    return [formatter.format(record) for formatter in _EXPORT_FORMATTERS]
