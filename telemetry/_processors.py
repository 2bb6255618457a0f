"""Span processors: the scrubbing gate in front of every exporter, and the console format.

Every span leaves the process through one ``ScrubbingSpanProcessor``: it scrubs a
finished span once (attributes, event and link attributes, status text) and hands
the scrubbed copy (or the span itself, when there was nothing to scrub) to each
exporter's own processor, so no exporter ever sees raw values. Sentry's
``before_send*`` hooks never see OTLP spans, hence this gate.

    gate = ScrubbingSpanProcessor([BatchSpanProcessor(OTLPSpanExporter(...))])
    provider.add_span_processor(gate)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Link, Status, StatusCode, format_span_id, format_trace_id
from opentelemetry.util.types import Attributes

from telemetry import _tap
from telemetry.scrubbing import scrub, scrub_attributes_if_changed

logger = logging.getLogger(__name__)

# Failing to scrub a span drops it (never export it raw); the warning is rate-limited.
_WARN_INTERVAL_S = 60.0


class _ScrubbedSpan(ReadableSpan):
    """A scrubbed copy of a finished span that keeps the original's dropped counts."""

    def __init__(
        self,
        original: ReadableSpan,
        *,
        attributes: Attributes,
        events: Sequence[Event],
        links: Sequence[Link],
        status: Status,
    ) -> None:
        super().__init__(
            name=original.name,
            context=original.context,
            parent=original.parent,
            resource=original.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=original.kind,
            status=status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )
        self._original = original

    @property
    def dropped_attributes(self) -> int:
        return self._original.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._original.dropped_links


def _scrubbed(attributes: Attributes) -> Attributes | None:
    """The scrubbed attributes, or None when there is nothing to change."""
    if not attributes:
        return None
    return scrub_attributes_if_changed(attributes)


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself when it holds nothing to scrub, else a copy whose attributes,
    events, links and status text are scrubbed."""
    attributes = _scrubbed(span.attributes)
    events: list[Event] | None = None
    for index, event in enumerate(span.events):
        clean = _scrubbed(event.attributes)
        if clean is not None:
            events = events if events is not None else list(span.events)
            events[index] = Event(event.name, clean, event.timestamp)
    links: list[Link] | None = None
    for index, link in enumerate(span.links):
        clean = _scrubbed(link.attributes)
        if clean is not None:
            links = links if links is not None else list(span.links)
            links[index] = Link(link.context, clean)
    status = span.status
    if status.description:
        description = str(scrub(status.description))
        if description != status.description:
            status = Status(status.status_code, description)
    if attributes is None and events is None and links is None and status is span.status:
        return span
    return _ScrubbedSpan(
        span,
        attributes=span.attributes if attributes is None else attributes,
        events=tuple(span.events if events is None else events),
        links=tuple(span.links if links is None else links),
        status=status,
    )


class ScrubbingSpanProcessor(SpanProcessor):
    """Fans finished spans out to ``processors`` after scrubbing them once.

    ``on_start`` is forwarded untouched (processors such as ``SentrySpanProcessor``
    need the live span to open their own); only ``on_end`` carries data out.
    """

    def __init__(self, processors: Iterable[SpanProcessor]) -> None:
        self._processors: tuple[SpanProcessor, ...] = tuple(processors)
        self._last_warning = 0.0

    @property
    def processors(self) -> tuple[SpanProcessor, ...]:
        return self._processors

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        for processor in self._processors:
            processor._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            clean = scrub_span(span)
        except Exception:
            self._warn("span %r dropped: scrubbing failed", span.name)
            return
        if _tap.observers:
            _tap.emit("span", clean)
        for processor in self._processors:
            processor.on_end(clean)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        flushed = True
        for processor in self._processors:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return False
            flushed = processor.force_flush(remaining_ms) and flushed
        return flushed

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL_S:
            self._last_warning = now
            logger.warning(message, *args, exc_info=True)


def format_console_span(span: ReadableSpan) -> str:
    """One readable line per span: ``trace/span parent  name  12.3 ms  STATUS  attrs``."""
    context = span.context
    trace_id = format_trace_id(context.trace_id) if context else "-"
    span_id = format_span_id(context.span_id) if context else "-"
    parent = format_span_id(span.parent.span_id) if span.parent else "root"
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    status = "" if span.status.status_code is StatusCode.UNSET else span.status.status_code.name
    attrs = " ".join(f"{key}={value!r}" for key, value in _items(span.attributes))
    return (
        f"{trace_id[:8]}/{span_id[:8]} <- {parent[:8]}  {span.name}  {duration_ms:.1f} ms"
        f"  {status}  {attrs}".rstrip()
        + "\n"
    )


def _items(attributes: Mapping[str, object] | None) -> Iterable[tuple[str, object]]:
    return attributes.items() if attributes else ()
