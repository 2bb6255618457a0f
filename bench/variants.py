"""Diagnostic variants: a configuration with one part of telemetry removed or changed.

Applied in a worker process before telemetry is configured, by patching telemetry's
internals at run time (bench only; nothing in ``telemetry/`` changes). Choices telemetry
offers as settings (``TELEMETRY_SQL_SPANS``) are given to the worker as settings
instead (``spec["telemetry"]``, see ``bench.diagnose``). Used by the
``diagnose`` case to attribute the overhead to components, and to try a fix before
proposing it. A variant whose patch target no longer exists fails that worker only.

- ``no_sql``: no SQLAlchemy instrumentation (no SQL spans, no cursor hooks);
- ``no_httpx``: no httpx instrumentation (no Bolna client span, no header injection);
- ``no_app``: no FastAPI server span;
- ``gc_freeze``: ``gc.freeze()`` once the app has started;
- ``no_breaker``: exporters never skip a failing destination (``telemetry._breaker``
  always closed) and retry refused connections (no fail-fast session): the queues fill
  and every batch waits out its retries, as before the breaker.
"""

from __future__ import annotations

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


def _no_breaker() -> None:
    from telemetry import _breaker, otel_setup

    _breaker.accepts = lambda state, now: True
    _breaker.begin_export = lambda state, now: True
    otel_setup.fail_fast_session = lambda: None  # type: ignore[assignment]


PATCHES: dict[str, Callable[[], None]] = {
    "no_sql": _no_sql,
    "no_httpx": _no_httpx,
    "no_app": _no_app,
    "no_breaker": _no_breaker,
}
AFTER_START = {"gc_freeze"}


def apply(names: list[str]) -> None:
    """Apply the named patches (``gc_freeze`` is applied by the worker after start-up)."""
    for name in names:
        if name in AFTER_START:
            continue
        PATCHES[name]()
