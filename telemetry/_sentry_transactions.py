"""Finished OTel spans as Sentry transactions, built off the request path.

``SENTRY_TRACES_MODE=span_processor`` puts ``SentryTransactionExporter`` behind the
scrubbing gate inside a ``BatchSpanProcessor``: the request path only queues finished
spans; the batch thread groups them by trace and, for each *local root* (a span with
no parent or a remote parent), runs the client's ``before_send_transaction`` (the error
policy's scrubbing hook sees every transaction) and hands the event to the initialised
sentry-sdk client's transport. No Sentry-side sampling: the OTel sampler already decided
(nothing unsampled reaches an exporter), so sentry-sdk needs no ``traces_sample_rate``.

    exporter = SentryTransactionExporter(environment="production", release="1.2.3")
    BatchSpanProcessor(exporter)

Spans whose local root is not in the batch (the batch boundary fell between a child and
its root) wait in a bounded buffer keyed by trace for up to ``grace_s`` and join the root
when it arrives in a later batch. A span whose root never arrives in time (it was
already sent, or it finished more than ``grace_s`` after its children, e.g. background
work outliving its request) is dropped and counted in ``dropped``; so is anything over
the buffer bounds. When sentry-sdk's transport queue is full (or Sentry rate-limits us)
an export waits for it, at most ``max_wait_s`` per batch, then hands over the rest
anyway (sentry-sdk drops and counts what does not fit). The exporter never raises into
the batch thread: failures are logged (rate-limited) and the spans dropped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import sentry_sdk
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from sentry_sdk.consts import VERSION as SENTRY_SDK_VERSION
from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope
from sentry_sdk.tracing import get_span_status_from_http_code
from sentry_sdk.utils import BadDsn, Dsn, format_timestamp

from telemetry import _tap
from telemetry import attributes as attr
from telemetry._instrumentation import DB_QUERY_EVENT

logger = logging.getLogger(__name__)

SDK_NAME: Final = "telemetry.sentry_transactions"
MAX_SPANS_PER_TRANSACTION: Final = 1000  # sentry-sdk's own default ``max_spans``
_WARN_INTERVAL_S: Final = 60.0
_PACE_S: Final = 0.005
_HTTP_STATUS_KEYS: Final = ("http.response.status_code", "http.status_code")


def envelope_endpoint(dsn: str) -> str:
    """The envelope endpoint for ``dsn`` (``https://host/api/42/envelope/``); ValueError if bad."""
    try:
        return Dsn(dsn).to_auth().get_api_url(EndpointType.ENVELOPE)
    except BadDsn as exc:
        raise ValueError(f"SENTRY_DSN is not a valid Sentry DSN: {exc}") from None


@dataclass
class _Pending:
    """Spans of one trace waiting for their local root, and when the first one arrived."""

    since: float
    spans: list[ReadableSpan] = field(default_factory=list)


class SentryTransactionExporter(SpanExporter):
    """Turns batches of finished OTel spans into Sentry transaction events (see module doc)."""

    def __init__(
        self,
        *,
        environment: str | None = None,
        release: str | None = None,
        grace_s: float = 30.0,
        max_pending_traces: int = 1024,
        max_pending_spans: int = 10_000,
        max_spans: int = MAX_SPANS_PER_TRANSACTION,
        max_wait_s: float = 2.0,
    ) -> None:
        self._max_wait_s = max_wait_s
        self._environment = environment
        self._release = release
        self._grace_s = grace_s
        self._max_pending_traces = max_pending_traces
        self._max_pending_spans = max_pending_spans
        self._max_spans = max_spans
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._pending_spans = 0
        self._lock = threading.Lock()
        self._last_warning = 0.0
        self._shut_down = False
        self.sent = 0
        self.dropped = 0

    # --- SpanExporter ----------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        try:
            with self._lock:
                events = self._collect(spans, time.monotonic())
        except Exception:
            self.dropped += len(spans)
            self._warn("%d spans dropped: could not build Sentry transactions", len(spans))
            return SpanExportResult.FAILURE
        ok = True
        deadline = time.monotonic() + self._max_wait_s
        for event in events:
            ok = self._send(event, deadline) and ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing queued here: a held child waits for its root, not for us

    def shutdown(self) -> None:
        with self._lock:
            self._shut_down = True
            if self._pending_spans:
                logger.debug(
                    "%d spans without a local root dropped at shutdown", self._pending_spans
                )
            self.dropped += self._pending_spans
            self._pending.clear()
            self._pending_spans = 0

    # --- grouping ----------------------------------------------------------------------

    def _collect(self, spans: Sequence[ReadableSpan], now: float) -> list[dict[str, Any]]:
        self._expire(now)
        by_trace: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            if span.context is not None:
                by_trace.setdefault(span.context.trace_id, []).append(span)
        events: list[dict[str, Any]] = []
        for trace_id, batch in by_trace.items():
            held = self._pending.pop(trace_id, None)
            if held is not None:
                self._pending_spans -= len(held.spans)
                batch = held.spans + batch
            trees, orphans = _local_trees(batch)
            for root, children in trees:
                events.append(self._transaction(root, children))
            if orphans:
                self._hold(trace_id, orphans, held.since if held is not None else now)
        return events

    def _hold(self, trace_id: int, spans: list[ReadableSpan], since: float) -> None:
        room = self._max_pending_spans - self._pending_spans
        if len(self._pending) >= self._max_pending_traces or len(spans) > room:
            self.dropped += len(spans)
            self._warn("%d spans dropped: too many waiting for their root", len(spans))
            return
        self._pending[trace_id] = _Pending(since, spans)
        self._pending_spans += len(spans)

    def _expire(self, now: float) -> None:
        while self._pending:
            trace_id, held = next(iter(self._pending.items()))
            if now - held.since < self._grace_s:
                break  # insertion order is arrival order: the rest are younger
            del self._pending[trace_id]
            self._pending_spans -= len(held.spans)
            self.dropped += len(held.spans)

    # --- events ------------------------------------------------------------------------

    def _transaction(self, root: ReadableSpan, children: list[ReadableSpan]) -> dict[str, Any]:
        entries = [_child(span) for span in children]
        for span in (root, *children):
            entries.extend(_query_children(span))
        entries.sort(key=lambda entry: entry["start_timestamp"])
        if len(entries) > self._max_spans:
            self.dropped += len(entries) - self._max_spans
            entries = entries[: self._max_spans]
        attributes = dict(root.attributes or {})
        context = root.context
        assert context is not None  # grouped by context above
        trace_context: dict[str, Any] = {
            "trace_id": format_trace_id(context.trace_id),
            "span_id": format_span_id(context.span_id),
            "op": span_op(root),
            "status": span_status(root),
            "data": _data(attributes),
            "origin": "auto.otel",
        }
        if root.parent is not None:
            trace_context["parent_span_id"] = format_span_id(root.parent.span_id)
        event: dict[str, Any] = {
            "type": "transaction",
            "event_id": uuid.uuid4().hex,
            "platform": "python",
            "transaction": root.name,
            "transaction_info": {"source": "route" if "http.route" in attributes else "custom"},
            "start_timestamp": _seconds(root.start_time),
            "timestamp": _seconds(root.end_time),
            "contexts": {"trace": trace_context, "otel": _otel_context(root)},
            "spans": entries,
            "sdk": {
                "name": SDK_NAME,
                "version": SENTRY_SDK_VERSION,
                "packages": [{"name": "pypi:sentry-sdk", "version": SENTRY_SDK_VERSION}],
            },
        }
        if self._environment:
            event["environment"] = self._environment
        if self._release:
            event["release"] = self._release
        return event

    def _send(self, event: dict[str, Any], deadline: float) -> bool:
        try:
            client = sentry_sdk.get_client()
            if not client.is_active():
                self.dropped += 1 + len(event["spans"])
                return False
            # One batch can hold hundreds of transactions, more than sentry-sdk's transport
            # queue (100): pace them (this thread is off the request path), within a bound.
            transport = client.transport
            while (
                transport is not None and not transport.is_healthy() and time.monotonic() < deadline
            ):
                time.sleep(_PACE_S)
            if transport is None:
                self.dropped += 1 + len(event["spans"])
                return False
            spans = 1 + len(event["spans"])
            # The hook capture_event would run (the error policy's scrubbing); the rest of
            # capture_event (scope, sentry-sdk's serialize walk: 2/3 of the cost) is not
            # needed for an event built here from JSON-safe span attributes.
            hook = client.options.get("before_send_transaction")
            if hook is not None:
                processed = hook(event, {})
                if processed is None:
                    transport.record_lost_event("before_send", data_category="transaction")
                    transport.record_lost_event("before_send", data_category="span", quantity=spans)
                    self.dropped += spans
                    return True
                event = dict(processed)
            envelope = Envelope(
                headers={
                    "event_id": event["event_id"],
                    "sent_at": format_timestamp(datetime.now(UTC)),
                    "trace": self._sampling_context(client, event),
                }
            )
            envelope.add_transaction(event)  # type: ignore[arg-type]
            if _tap.observers:
                _tap.emit("sentry_transaction", event)
            transport.capture_envelope(envelope)
            self.sent += 1
            return True
        except Exception:
            self.dropped += 1 + len(event.get("spans", ()))
            self._warn("Sentry transaction %r dropped: sending failed", event.get("transaction"))
            return False

    def _sampling_context(self, client: Any, event: Mapping[str, Any]) -> dict[str, str]:
        """The envelope's ``trace`` header (dynamic sampling context): already sampled."""
        context = {
            "trace_id": event["contexts"]["trace"]["trace_id"],
            "sampled": "true",
            "transaction": str(event.get("transaction", "")),
        }
        dsn = client.parsed_dsn
        if dsn is not None:
            context["public_key"] = dsn.public_key
        for key in ("environment", "release"):
            if event.get(key):
                context[key] = str(event[key])
        return context

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL_S:
            self._last_warning = now
            logger.warning(message, *args, exc_info=True)


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


def _local_trees(
    spans: list[ReadableSpan],
) -> tuple[list[tuple[ReadableSpan, list[ReadableSpan]]], list[ReadableSpan]]:
    """``([(root, its descendants)], spans whose local root is not among spans)``."""
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    root_of: dict[int, int | None] = {}

    def find_root(span: ReadableSpan) -> int | None:
        path: list[int] = []
        current: ReadableSpan | None = span
        found: int | None = None
        while current is not None and current.context is not None:
            span_id = current.context.span_id
            if span_id in root_of:
                found = root_of[span_id]
                break
            path.append(span_id)
            if _is_local_root(current):
                found = span_id
                break
            parent = current.parent
            assert parent is not None
            current = by_id.get(parent.span_id)
            if len(path) > len(by_id):
                break  # a cycle: never in a real trace, but never loop
        for span_id in path:
            root_of[span_id] = found
        return found

    trees: dict[int, tuple[ReadableSpan, list[ReadableSpan]]] = {}
    orphans: list[ReadableSpan] = []
    for span in spans:
        if span.context is not None and _is_local_root(span):
            trees[span.context.span_id] = (span, [])
    for span in spans:
        if span.context is None or _is_local_root(span):
            continue
        root = find_root(span)
        if root is None or root not in trees:
            orphans.append(span)
        else:
            trees[root][1].append(span)
    return list(trees.values()), orphans


def span_op(span: ReadableSpan) -> str:
    """Sentry's ``op`` for an OTel span: http.server/http.client/db/queue.*/rpc/function."""
    attributes = span.attributes or {}
    if "db.system" in attributes or "db.system.name" in attributes:
        return "db"
    if span.kind is SpanKind.SERVER:
        return "http.server"
    if "messaging.system" in attributes:
        return "queue.publish" if span.kind is SpanKind.PRODUCER else "queue.process"
    if "rpc.service" in attributes:
        return "rpc"
    if span.kind is SpanKind.CLIENT and (
        "http.request.method" in attributes or "http.method" in attributes
    ):
        return "http.client"
    return "function"


def span_status(span: ReadableSpan) -> str:
    """``internal_error`` for an OTel error, else from the HTTP status code, else ``ok``."""
    attributes = span.attributes or {}
    code = next((attributes[key] for key in _HTTP_STATUS_KEYS if key in attributes), None)
    http_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if span.status.status_code is StatusCode.ERROR:
        if http_code is not None and http_code >= 500:
            return get_span_status_from_http_code(http_code)
        return "internal_error"
    if http_code is not None:
        return get_span_status_from_http_code(http_code)
    return "ok"


def _seconds(ns: int | None) -> float:
    return (ns if ns is not None else time.time_ns()) / 1e9


def _data(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in attributes.items()
    }


def _otel_context(span: ReadableSpan) -> dict[str, Any]:
    resource = span.resource.attributes if span.resource is not None else {}
    return {"resource": _data(resource)}


def _child(span: ReadableSpan) -> dict[str, Any]:
    context = span.context
    assert context is not None and span.parent is not None
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
        "parent_span_id": format_span_id(span.parent.span_id),
        "op": span_op(span),
        "description": span.name,
        "start_timestamp": _seconds(span.start_time),
        "timestamp": _seconds(span.end_time),
        "status": span_status(span),
        "data": _data(span.attributes or {}),
        "origin": "auto.otel",
    }


def _query_children(span: ReadableSpan) -> list[dict[str, Any]]:
    """Sentry ``db`` spans for the ``db.query`` events of ``span`` (TELEMETRY_SQL_SPANS=events)."""
    context = span.context
    if not span.events or context is None:
        return []
    entries = []
    for event in span.events:
        if event.name != DB_QUERY_EVENT:
            continue
        attributes = event.attributes or {}
        duration_ms = attributes.get(attr.DB_DURATION_MS)
        start = event.timestamp / 1e9
        end = start + duration_ms / 1e3 if isinstance(duration_ms, int | float) else start
        entries.append(
            {
                "trace_id": format_trace_id(context.trace_id),
                "span_id": uuid.uuid4().hex[16:],
                "parent_span_id": format_span_id(context.span_id),
                "op": "db",
                "description": str(attributes.get(attr.DB_STATEMENT, "")),
                "start_timestamp": start,
                "timestamp": end,
                "status": "internal_error" if attr.ERROR_TYPE in attributes else "ok",
                "data": _data(attributes),
                "origin": "auto.otel",
            }
        )
    return entries
