"""What leaves the process, observable by tests: every payload at the point it is handed
to an exporter, an error backend or Sentry's transport, after scrubbing.

    from telemetry.testing import observe_exports

    with observe_exports() as seen:        # [(kind, payload), ...]
        ... drive the app ...

Kinds: ``span`` (a scrubbed ``ReadableSpan`` on its way to the span processors behind
the scrubbing processor), ``error_report`` (an ``ErrorReport`` on its way to the error
backend), ``sentry_event`` / ``sentry_transaction`` (the event dict sentry-sdk will put
in an envelope). Production registers no observer, so each hook costs one falsy check.
Observers must not raise; one that does is a bug in the test, and it propagates.
"""

from __future__ import annotations

from collections.abc import Callable

Observer = Callable[[str, object], None]

observers: list[Observer] = []


def emit(kind: str, payload: object) -> None:
    for observer in tuple(observers):
        observer(kind, payload)
