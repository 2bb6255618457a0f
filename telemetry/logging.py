"""Log correlation: every stdlib log record carries the current ``trace_id``/``span_id``.

    setup_logging(settings)    # called by telemetry.configure()
    logger.info("call queued")  # {"message": "call queued", "trace_id": "4bf9...", ...}

Records get ``trace_id`` and ``span_id`` (hex, empty outside a span) from a log-record
factory, so every handler sees them, pytest's ``caplog`` included. Output is JSON lines
in production (``LOG_FORMAT=json``; message, exception and extras scrubbed) and
readable (also scrubbed) text elsewhere. Under ``APP_ENV=test`` no handler is installed (pytest owns
logging). The warnings exporters and HTTP pools log for every dropped span, retry or
failed batch while a backend is down are let through once a minute per message, with a
count of the rest. ``reset_logging()`` undoes it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Final

from opentelemetry import trace

from telemetry.scrubbing import scrub, scrub_text
from telemetry.settings import TelemetrySettings

_TEXT_FORMAT: Final = (
    "%(asctime)s %(levelname)-7s %(name)s [trace=%(trace_id).8s span=%(span_id).8s] %(message)s"
)
# Attributes every LogRecord has; anything else came from `extra=` and is exported.
_STANDARD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "trace_id", "span_id", "taskName"}
)

_MAX_LINE: Final = 64 * 1024  # a log line with a traceback is long; keep it whole

RecordFactory = Callable[..., logging.LogRecord]

# (the factory we replaced, ours) while installed; the handler we added, if any.
_factories: tuple[RecordFactory, RecordFactory] | None = None
_handler: logging.Handler | None = None


def _correlating(original: RecordFactory) -> RecordFactory:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = record.span_id = ""
        return record

    return factory


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace/span ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_FIELDS and not key.startswith("_"):
                document[key] = scrub(value, key)
        if record.exc_info:
            document["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(document, default=str, ensure_ascii=False)


_NOISY_LOGGERS = ("httpx", "httpcore")
# While a telemetry backend is down these log once per dropped span ("Queue full"),
# per retry and per failed batch: thousands of lines a minute, formatted on the request
# path. One line per message per minute is enough to know, with a count of the rest.
_BACKEND_FAILURE_LOGGERS: Final = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "urllib3.connectionpool",
)
_FAILURE_LOG_INTERVAL_S: Final = 60.0
_MAX_TEMPLATES: Final = 256


class OncePerInterval(logging.Filter):
    """Lets one record per message template through every ``interval_s``.

    The next record let through says how many were held back in between.
    """

    def __init__(self, interval_s: float = _FAILURE_LOG_INTERVAL_S) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else repr(record.msg)
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(template, 0.0):
                self._held[template] = self._held.get(template, 0) + 1
                return False
            if len(self._next) >= _MAX_TEMPLATES:
                self._next.clear()
                self._held.clear()
            self._next[template] = now + self._interval_s
            held = self._held.pop(template, 0)
        if held:
            record.msg = f"{template} [{held} more like this in the last {self._interval_s:.0f} s]"
        return True


_failure_filter: Final = OncePerInterval()


def setup_logging(
    settings: TelemetrySettings, *, stream: IO[str] | None = None, level: int = logging.INFO
) -> None:
    """Install trace-id correlation and, outside tests, one root handler (idempotent)."""
    global _factories, _handler
    if _factories is None:
        original = logging.getLogRecordFactory()
        _factories = (original, _correlating(original))
        logging.setLogRecordFactory(_factories[1])
    if settings.app_env == "test" and stream is None:
        return
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter() if settings.resolved_log_format == "json" else TextFormatter()
    )
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    # Per-request INFO lines from HTTP client libraries cost a formatted record per Bolna
    # call and say nothing the spans don't; their warnings still show.
    for noisy in _NOISY_LOGGERS:
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _BACKEND_FAILURE_LOGGERS:
        logging.getLogger(name).addFilter(_failure_filter)  # once: filters are a set
    _handler = handler


def reset_logging() -> None:
    """Remove what ``setup_logging`` installed."""
    global _factories, _handler
    if _factories is not None:
        original, ours = _factories
        if logging.getLogRecordFactory() is ours:
            logging.setLogRecordFactory(original)
        _factories = None
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    for name in _BACKEND_FAILURE_LOGGERS:
        logging.getLogger(name).removeFilter(_failure_filter)


class TextFormatter(logging.Formatter):
    """Readable lines for development; scrubbed like the JSON lines."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "trace_id"):  # a record made before setup_logging
            record.trace_id = record.span_id = ""
        return scrub_text(super().format(record), max_length=_MAX_LINE)
