"""A circuit breaker per export destination: while it is failing, drop, never hold.

A failed export (the OTLP exporter has already retried within its timeout) *opens* the
breaker for a back-off period, 5 s doubling per failed probe up to 60 s. While open,
finished spans are dropped before they reach the batch queue and a batch already queued
is dropped without a request: a dead backend costs the process what a healthy one
does (no full queues, no request bodies held through retries), and nothing is waited
for on the request path. When the back-off ends the breaker is *half-open*: items are
queued again and the next batch is the probe (items finished while it is in flight are
dropped); success closes the breaker, failure opens it for longer. Every drop is
counted (``CircuitBreaker.status()``, in ``telemetry.status()["exports"]``) and one
warning per minute says how many.

    breaker = CircuitBreaker("otlp traces", endpoint)
    processor = GuardedBatchSpanProcessor(GuardedSpanExporter(exporter, breaker), breaker)

The decision is plain data and functions (``BreakerState``, ``begin_export``,
``end_export``, ``accepts``); ``CircuitBreaker`` adds the clock, a lock and the counts.

*Connection refused* (nothing listens: the collector is down or not deployed) ends an
OTLP export at once (``fail_fast_session``): the exporter would otherwise retry it with
1 s and 2 s back-offs within its timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``), while the
queue fills behind the first failing batch. Other connection errors (resets, DNS,
timeouts) keep the exporter's own retries within that timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S: Final = 5.0
MAX_BACKOFF_S: Final = 60.0
_WARN_INTERVAL_S: Final = 60.0


def queue_size(default: int, queue_variable: str, batch_variable: str) -> int | None:
    """Our queue bound, or None (the SDK reads ``queue_variable``) when that is set. Never
    below a batch size set in ``batch_variable``, which the SDK would refuse."""
    if os.environ.get(queue_variable, "").strip():
        return None
    try:
        batch = int(os.environ.get(batch_variable, "").strip() or 0)
    except ValueError:
        batch = 0  # the SDK warns about it and uses its default (512)
    return max(default, batch)


# --- the decision ----------------------------------------------------------------------


@dataclass
class BreakerState:
    """Consecutive failed exports, until when exports are skipped, and whether a probe
    is in flight. ``failures == 0`` is the closed (healthy) state."""

    first_backoff_s: float = FIRST_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


def backoff_s(state: BreakerState) -> float:
    """How long the breaker stays open after the latest failure."""
    if state.failures <= 0:
        return 0.0
    doublings = min(state.failures - 1, 30)
    return min(state.first_backoff_s * float(2**doublings), state.max_backoff_s)


def accepts(state: BreakerState, now: float) -> bool:
    """May a finished item be queued? Closed: yes; open or probing: no; half-open: yes."""
    return state.failures == 0 or (now >= state.open_until and not state.probing)


def begin_export(state: BreakerState, now: float) -> bool:
    """Send this batch (True) or drop it (False). Sending while half-open is the probe."""
    if state.failures == 0:
        return True
    if now < state.open_until:
        return False
    state.probing = True
    return True


def end_export(state: BreakerState, ok: bool, now: float) -> None:
    """Record a sent batch's outcome: success closes, failure (re)opens for longer."""
    state.probing = False
    if ok:
        state.failures = 0
        state.open_until = 0.0
    else:
        state.failures += 1
        state.open_until = now + backoff_s(state)


# --- the breaker -----------------------------------------------------------------------


class CircuitBreaker:
    """One destination's breaker: the state, the counts, the rate-limited warning."""

    def __init__(
        self,
        name: str,
        endpoint: str | None = None,
        *,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.endpoint = _without_credentials(endpoint)
        self._state = BreakerState(first_backoff_s, max_backoff_s)
        self._clock = clock
        self._lock = threading.Lock()
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self._dropped_unreported = 0
        self._last_warning = -_WARN_INTERVAL_S

    @property
    def state(self) -> str:
        """``closed``, ``open``, ``half-open`` or ``probing``."""
        state = self._state
        if state.failures == 0:
            return "closed"
        if state.probing:
            return "probing"
        return "open" if self._clock() < state.open_until else "half-open"

    def accepts(self) -> bool:
        """Whether a finished item may be queued now (no lock: a stale answer is harmless)."""
        return accepts(self._state, self._clock())

    def drop(self, count: int) -> None:
        with self._lock:
            self.dropped += count
            self._dropped_unreported += count

    def export(self, send: Callable[[], bool], count: int) -> bool:
        """Run ``send`` (True on success) unless the breaker is open; count the outcome.

        An exception from ``send`` counts as a failure and is not raised.
        """
        with self._lock:
            go = begin_export(self._state, self._clock())
        if not go:
            self.drop(count)
            self._warn_if_due(None)
            return False
        ok = False
        error: BaseException | None = None
        try:
            ok = send()
        except Exception as exc:
            error = exc
        with self._lock:
            end_export(self._state, ok, self._clock())
            if ok:
                self.exported += count
            else:
                self.failed += count
        if not ok:
            self._warn_if_due(error)
        return ok

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self.state,
                "exported": self.exported,
                "failed": self.failed,
                "dropped": self.dropped,
                "backoff_s": backoff_s(self._state),
            }

    def _warn_if_due(self, error: BaseException | None) -> None:
        now = self._clock()
        with self._lock:
            if now - self._last_warning < _WARN_INTERVAL_S:
                return
            self._last_warning = now
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            pause = backoff_s(self._state)
        logger.warning(
            "%s export to %s failing%s: dropping instead of queueing for %.0f s "
            "(%d dropped since the last warning, %d failed, %d dropped in all); "
            "your code still runs, with less telemetry",
            self.name,
            self.endpoint or "its destination",
            f" ({type(error).__name__}: {error})" if error is not None else "",
            pause,
            dropped,
            self.failed,
            self.dropped,
        )


def _without_credentials(endpoint: str | None) -> str | None:
    """``endpoint`` without user info or query string (it goes into log lines)."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --- connection refused ----------------------------------------------------------------

_CREDENTIAL_PROVIDERS: Final = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
)


class ConnectionRefused(Exception):
    """Nothing listens at the export endpoint. Deliberately not a ``requests``
    connection error: the OTLP exporter retries those, and gives up at once on others."""


def _refused(error: BaseException) -> bool:
    """Whether ``error`` (requests > urllib3 > socket, through args, reason and causes)
    comes from a refused connection."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending and len(seen) < 32:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        pending.extend(current.args)
        pending.extend((getattr(current, "reason", None), current.__cause__, current.__context__))
    return False


def fail_fast_session() -> Any:
    """A ``requests.Session`` for an OTLP exporter on which a refused connection fails the
    export at once (see the module doc); None when a credential provider variable
    (``OTEL_PYTHON_EXPORTER_OTLP_HTTP_*_CREDENTIAL_PROVIDER``) supplies the session."""
    if any(os.environ.get(name, "").strip() for name in _CREDENTIAL_PROVIDERS):
        return None
    import requests

    class FailFastSession(requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().request(method, url, *args, **kwargs)
            except requests.ConnectionError as error:
                if _refused(error):
                    # No chain: the error would keep the request (and its body) alive.
                    raise ConnectionRefused(f"connection refused by {url}") from None
                raise

    return FailFastSession()


# --- spans -----------------------------------------------------------------------------


class GuardedSpanExporter(SpanExporter):
    """``exporter`` behind ``breaker``: batches are dropped (FAILURE) while it is open."""

    def __init__(self, exporter: SpanExporter, breaker: CircuitBreaker) -> None:
        self.exporter = exporter
        self.breaker = breaker

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        def send() -> bool:
            return self.exporter.export(spans) is SpanExportResult.SUCCESS

        ok = self.breaker.export(send, len(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class GuardedBatchSpanProcessor(BatchSpanProcessor):
    """A ``BatchSpanProcessor`` that drops (and counts) finished spans instead of queueing
    them while ``breaker`` is open or probing. Its queue and batch settings are the
    standard ones (``OTEL_BSP_*``)."""

    def __init__(self, exporter: SpanExporter, breaker: CircuitBreaker, **options: Any) -> None:
        super().__init__(exporter, **options)
        self.breaker = breaker

    def on_end(self, span: ReadableSpan) -> None:
        if self.breaker.accepts():
            super().on_end(span)
        elif span.context is not None and span.context.trace_flags.sampled:
            self.breaker.drop(1)


# --- log records (the OTLP error backend) ---------------------------------------------


class GuardedLogRecordExporter(LogRecordExporter):
    """``exporter`` behind ``breaker``, as ``GuardedSpanExporter`` is for spans."""

    def __init__(self, exporter: LogRecordExporter, breaker: CircuitBreaker) -> None:
        self.exporter = exporter
        self.breaker = breaker

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        def send() -> bool:
            return self.exporter.export(batch) is LogRecordExportResult.SUCCESS

        ok = self.breaker.export(send, len(batch))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
