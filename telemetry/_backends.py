"""Error backends: where a report the error policy decided to send goes.

Chosen by ``TELEMETRY_ERROR_BACKEND`` (sentry | otlp | log | none) through ``BACKENDS``;
a new backend is one class with ``name``, ``send`` and ``flush`` added to that dict.
Backends receive reports that are already decided and scrubbed; they only translate.

    backend = build_backend("otlp", settings)
    backend.send(report)
    backend.flush(timeout=2.0)
"""

from __future__ import annotations

import contextvars
import logging
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from telemetry import attributes as attr
from telemetry.scrubbing import scrub_event, scrub_text
from telemetry.settings import TelemetrySettings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from sentry_sdk._types import Event, Hint

__all__ = [
    "BACKENDS",
    "ErrorBackend",
    "ErrorReport",
    "LogBackend",
    "NoneBackend",
    "OtlpBackend",
    "SentryBackend",
    "build_backend",
]

_log = logging.getLogger("telemetry.errors")

# Set while SentryBackend hands an event to sentry-sdk, so that the policy's
# ``before_send`` hook knows the event was decided already and lets it through.
sending_decided_event: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "telemetry_sending_decided_event", default=False
)

_STACKTRACE_MAX = 16_000
_LOG_LEVELS = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """One decided, scrubbed error or message, ready for a backend.

    ``message`` is scrubbed text ("ExcType: message" for exceptions). ``exception`` is the
    original object for backends that render stack traces (their output is scrubbed
    again on the way out). ``trace_id``/``span_id`` are the current OTel span's, 0 when
    there is none.
    """

    feature: str
    level: str
    message: str
    exception: BaseException | None
    tags: Mapping[str, str]
    context: Mapping[str, object]
    fingerprint: tuple[str, ...]
    repeat_count: int = 0
    trace_id: int = 0
    span_id: int = 0
    trace_flags: int = 0
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def trace_id_hex(self) -> str | None:
        return format(self.trace_id, "032x") if self.trace_id else None

    @property
    def span_id_hex(self) -> str | None:
        return format(self.span_id, "016x") if self.span_id else None

    @property
    def exception_type(self) -> str | None:
        return None if self.exception is None else type(self.exception).__name__

    def stacktrace(self) -> str | None:
        """The exception's formatted traceback, scrubbed and bounded."""
        if self.exception is None:
            return None
        exc = self.exception
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return scrub_text(text, max_length=_STACKTRACE_MAX)


class ErrorBackend(Protocol):
    """Sends decided reports somewhere. Must not block long; may raise on failure."""

    name: str

    def send(self, report: ErrorReport) -> None: ...

    def flush(self, timeout: float) -> None: ...


def log_report(report: ErrorReport, *, outcome: str = "sent", reason: str = "ok") -> None:
    """Write ``report`` as one line on the ``telemetry.errors`` logger."""
    level = _LOG_LEVELS.get(report.level, logging.ERROR)
    if not _log.isEnabledFor(level):
        return
    fields = {
        "feature": report.feature,
        "level": report.level,
        "outcome": outcome,
        "reason": reason,
        "fingerprint": "/".join(report.fingerprint),
        "repeat_count": report.repeat_count,
        "trace_id": report.trace_id_hex,
        "span_id": report.span_id_hex,
        **report.tags,
        **{f"ctx.{k}": v for k, v in report.context.items()},
    }
    line = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
    _log.log(
        level,
        "%s | %s",
        report.message,
        line,
        extra={"error_report": fields, "stacktrace": report.stacktrace()},
    )


class NoneBackend:
    """Sends nothing (the decision is still counted and recorded on the span)."""

    name = "none"

    def __init__(self, settings: TelemetrySettings | None = None) -> None:
        pass

    def send(self, report: ErrorReport) -> None:
        pass

    def flush(self, timeout: float) -> None:
        pass


class LogBackend:
    """One scrubbed line per report on the ``telemetry.errors`` stdlib logger."""

    name = "log"

    def __init__(self, settings: TelemetrySettings | None = None) -> None:
        pass

    def send(self, report: ErrorReport) -> None:
        log_report(report)

    def flush(self, timeout: float) -> None:
        pass


def _scrub_sentry_event(event: Event, hint: Hint) -> Event:
    return scrub_event(event)  # type: ignore[return-value]


class SentryBackend:
    """Sends through sentry-sdk, which the Sentry setup module initialises.

    Each report gets its own forked scope carrying tags, contexts, fingerprint, level
    and the OTel trace context (so Sentry links the error to its trace). Falls back to
    logging when sentry-sdk is not initialised, rather than failing or sending nowhere.
    """

    name = "sentry"

    def __init__(
        self, settings: TelemetrySettings | None = None, *, fallback: ErrorBackend | None = None
    ) -> None:
        self._fallback: ErrorBackend = fallback or LogBackend(settings)

    def send(self, report: ErrorReport) -> None:
        import sentry_sdk

        if not sentry_sdk.is_initialized():
            self._fallback.send(report)
            return
        token = sending_decided_event.set(True)
        try:
            with sentry_sdk.new_scope() as scope:
                scope.set_level(report.level)  # type: ignore[arg-type]
                for key, value in report.tags.items():
                    scope.set_tag(key, value)
                if report.context:
                    scope.set_context("app", dict(report.context))
                scope.set_context(
                    "error_policy",
                    {"repeat_count": report.repeat_count, "feature": report.feature},
                )
                if report.trace_id:
                    scope.set_context(
                        "trace", {"trace_id": report.trace_id_hex, "span_id": report.span_id_hex}
                    )
                scope.fingerprint = list(report.fingerprint)
                # The exception text and frame locals are rendered by sentry-sdk itself:
                # scrub the finished event too, whether or not before_send is installed.
                scope.add_event_processor(_scrub_sentry_event)
                if report.exception is not None:
                    sentry_sdk.capture_exception(report.exception)
                else:
                    sentry_sdk.capture_message(report.message, level=report.level)  # type: ignore[arg-type]
        finally:
            sending_decided_event.reset(token)

    def flush(self, timeout: float) -> None:
        import sentry_sdk

        if sentry_sdk.is_initialized():
            sentry_sdk.flush(timeout=timeout)
        self._fallback.flush(timeout)


# Reports waiting for export (SDK default 2048); OTEL_BLRP_MAX_QUEUE_SIZE wins.
_MAX_QUEUED = 512
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "fatal": 21}


def _otlp_logs_endpoint(settings: TelemetrySettings) -> str:
    explicit = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip()
    if explicit:
        return explicit
    return settings.otlp_endpoint.rstrip("/") + "/v1/logs"


def _otlp_headers(settings: TelemetrySettings) -> dict[str, str]:
    from opentelemetry.util.re import parse_env_headers

    raw = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "").strip() or settings.otlp_headers
    return dict(parse_env_headers(raw, liberal=True)) if raw else {}


_TAG_ATTRIBUTES = {
    "feature": attr.FEATURE,
    "error_type": attr.ERROR_TYPE,
    "call_source": attr.CALL_SOURCE,
    "campaign_id": attr.CAMPAIGN_ID,
    "bolna_endpoint": attr.BOLNA_ENDPOINT,
    "http_status_class": attr.HTTP_STATUS_CLASS,
}


class OtlpBackend:
    """Each report becomes an OTel log record exported over OTLP/HTTP.

    The record carries the current span's trace context, a severity from the level and
    ``exception.*`` attributes, so a collector can route it anywhere (Sentry's OTLP logs,
    Loki, ...). Endpoint: ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/logs``; headers likewise. ``exporter`` replaces
    the OTLP exporter (tests pass an in-memory one).
    """

    name = "otlp"

    def __init__(
        self,
        settings: TelemetrySettings | None = None,
        *,
        exporter: LogRecordExporter | None = None,
    ) -> None:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        from telemetry._breaker import (
            CircuitBreaker,
            GuardedLogRecordExporter,
            fail_fast_session,
            queue_size,
        )

        # Imported here: otel_setup imports this module (through the error policy).
        from telemetry.otel_setup import build_resource

        settings = settings or TelemetrySettings()
        endpoint = _otlp_logs_endpoint(settings)
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

            exporter = OTLPLogExporter(
                endpoint=endpoint, headers=_otlp_headers(settings), session=fail_fast_session()
            )
        # The spans' resource, service.instance.id included, so a backend can tell which
        # process reported the error (a resource of its own would get a random id).
        resource = build_resource(settings)
        self._provider: LoggerProvider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        # While the collector is down, reports are dropped and counted, not held through
        # retries; the queue is bounded (a report can carry a 16 kB stack trace).
        self.breaker = CircuitBreaker("otlp error reports", endpoint)
        queue = queue_size(
            _MAX_QUEUED, "OTEL_BLRP_MAX_QUEUE_SIZE", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"
        )
        self._provider.add_log_record_processor(
            BatchLogRecordProcessor(
                GuardedLogRecordExporter(exporter, self.breaker), max_queue_size=queue
            )
        )
        self._logger = self._provider.get_logger("telemetry.errors")

    def send(self, report: ErrorReport) -> None:
        from opentelemetry import trace
        from opentelemetry._logs import SeverityNumber

        attributes: dict[str, Any] = {
            attr.ERROR_LEVEL: report.level,
            attr.ERROR_FINGERPRINT: list(report.fingerprint),
            attr.ERROR_REPEAT_COUNT: report.repeat_count,
        }
        for key, value in report.tags.items():
            attributes[_TAG_ATTRIBUTES.get(key, f"app.tag.{key}")] = value
        for key, context_value in report.context.items():
            name = key if "." in key else f"app.{key}"
            attributes.setdefault(
                name, context_value if _is_attribute_value(context_value) else str(context_value)
            )
        if report.exception is not None:
            exc = report.exception
            attributes["exception.type"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            attributes["exception.message"] = _safe_exception_text(exc)
            attributes["exception.stacktrace"] = report.stacktrace()
        context = None
        if report.trace_id:
            span_context = trace.SpanContext(
                trace_id=report.trace_id,
                span_id=report.span_id,
                is_remote=False,
                trace_flags=trace.TraceFlags(report.trace_flags),
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
        self._logger.emit(
            context=context,
            severity_number=SeverityNumber(_SEVERITY.get(report.level, 17)),
            severity_text=report.level.upper(),
            body=report.message,
            attributes=attributes,
        )

    def flush(self, timeout: float) -> None:
        self._provider.force_flush(timeout_millis=int(timeout * 1000))

    def shutdown(self) -> None:
        self._provider.shutdown()


def _is_attribute_value(value: object) -> bool:
    if isinstance(value, str | bool | int | float):
        return True
    return isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    )


def _safe_exception_text(exc: BaseException) -> str:
    try:
        return scrub_text(str(exc))
    except Exception:
        return f"[unprintable {type(exc).__name__}]"


BACKENDS: dict[str, Callable[[TelemetrySettings], ErrorBackend]] = {
    "sentry": SentryBackend,
    "otlp": OtlpBackend,
    "log": LogBackend,
    "none": NoneBackend,
}


def build_backend(name: str, settings: TelemetrySettings) -> ErrorBackend:
    """Build the backend registered under ``name``; unknown names raise ``ValueError``."""
    try:
        factory = BACKENDS[name.strip().lower()]
    except KeyError:
        valid = ", ".join(sorted(BACKENDS))
        raise ValueError(
            f"unknown TELEMETRY_ERROR_BACKEND {name!r}; valid names: {valid}"
        ) from None
    return factory(settings)
