"""Diagnostic variants: a configuration with one part of telemetry removed or changed.

Applied in a worker process before telemetry is configured, by patching telemetry's
internals at run time (bench only; nothing in ``telemetry/`` changes). Used by the
``diagnose`` case to attribute the overhead to components, and to try a fix before
proposing it. A variant whose patch target no longer exists fails that worker only.

- ``no_sql``: no SQLAlchemy instrumentation (no SQL spans, no cursor hooks);
- ``no_httpx``: no httpx instrumentation (no Bolna client span, no header injection);
- ``no_app``: no FastAPI server span;
- ``sql_skip_tx``: no span for transaction control (BEGIN, SAVEPOINT, RELEASE, COMMIT,
  ROLLBACK): SQLite's ``BEGIN IMMEDIATE`` is issued as a statement on every transaction;
- ``scrub_fast_path``: the scrubbing gate passes a span through uncopied when scrubbing
  changes nothing, and caches scrubbed strings (SQL statements repeat verbatim);
- ``sql_as_events``: SQL statements recorded as ``db.query`` events (operation, statement,
  duration) on the current span instead of child spans (transaction control skipped);
- ``gc_freeze``: ``gc.freeze()`` once the app has started.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

_TX_STATEMENTS = ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "ROLLBACK")


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _no_sql() -> None:
    from telemetry import otel_setup

    otel_setup.Telemetry.instrument_engine = _nothing  # type: ignore[method-assign]


def _no_httpx() -> None:
    from telemetry import otel_setup

    otel_setup.Telemetry.instrument_httpx = _nothing  # type: ignore[method-assign]


def _no_app() -> None:
    from telemetry import otel_setup

    otel_setup.Telemetry.instrument_app = _nothing  # type: ignore[method-assign]


def _sql_skip_tx() -> None:
    from telemetry import _instrumentation

    original = _instrumentation._SqlHooks.before_cursor_execute

    def before_cursor_execute(
        self: Any, conn: Any, cursor: Any, statement: str, *rest: Any
    ) -> None:
        if statement.startswith(_TX_STATEMENTS):
            return
        original(self, conn, cursor, statement, *rest)

    hooks: Any = _instrumentation._SqlHooks
    hooks.before_cursor_execute = before_cursor_execute


def _scrub_fast_path() -> None:
    from telemetry import _processors, scrubbing

    cached_text = functools.lru_cache(maxsize=4096)(scrubbing.scrub_text)
    original = _processors.scrub_span

    def unchanged(attributes: Any) -> bool:
        for key, value in attributes.items():
            if scrubbing._key_class(key) != scrubbing._PLAIN:
                return False
            if isinstance(value, str):
                if len(value) >= 7 and cached_text(value) != value:
                    return False
            elif isinstance(value, int) and not isinstance(value, bool):
                if value >= 1_000_000_000 and scrubbing._scrub_int(value) != value:
                    return False
            elif not (value is None or isinstance(value, bool | float)):
                return False
        return True

    def scrub_span(span: Any) -> Any:
        if span.events or span.links or span.status.description:
            return original(span)
        if not span.attributes or unchanged(span.attributes):
            return span
        return original(span)

    _processors.scrub_span = scrub_span


def _sql_as_events() -> None:
    from opentelemetry import trace

    from telemetry import _instrumentation

    key = "_bench_sql_event"

    def before_cursor_execute(
        self: Any, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: Any
    ) -> None:
        if context is None or statement.startswith(_TX_STATEMENTS):
            return
        span = trace.get_current_span()
        if span.is_recording():
            setattr(context, key, (span, time.perf_counter_ns()))

    def after_cursor_execute(
        self: Any, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: Any
    ) -> None:
        started = getattr(context, key, None)
        if started is None:
            return
        span, began = started
        setattr(context, key, None)
        words = statement.split(maxsplit=1)
        span.add_event(
            "db.query",
            {
                "db.operation": words[0].upper() if words else "SQL",
                "db.statement": statement[:2000],
                "db.duration_ms": (time.perf_counter_ns() - began) / 1e6,
            },
        )

    hooks: Any = _instrumentation._SqlHooks
    hooks.before_cursor_execute = before_cursor_execute
    hooks.after_cursor_execute = after_cursor_execute


PATCHES: dict[str, Callable[[], None]] = {
    "no_sql": _no_sql,
    "no_httpx": _no_httpx,
    "no_app": _no_app,
    "sql_skip_tx": _sql_skip_tx,
    "scrub_fast_path": _scrub_fast_path,
    "sql_as_events": _sql_as_events,
}
AFTER_START = {"gc_freeze"}


def apply(names: list[str]) -> None:
    """Apply the named patches (``gc_freeze`` is applied by the worker after start-up)."""
    for name in names:
        if name in AFTER_START:
            continue
        PATCHES[name]()
