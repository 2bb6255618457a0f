"""Telemetry for the service: OpenTelemetry tracing, one error policy, log correlation.

The only module the app imports for telemetry (spans themselves come from
``opentelemetry.trace``); vendors and SDKs stay behind it.

    import telemetry
    from telemetry import attributes

    tele = telemetry.configure()                  # lifespan start (idempotent)
    tele.instrument_app(app); tele.instrument_engine(engine); tele.instrument_httpx(client)

    telemetry.capture_error(exc, feature="call_initiation", call_id=call.id)
    with telemetry.report_errors(feature="webhook"):
        ...
    call.traceparent = telemetry.current_traceparent()
    links = telemetry.link_from_traceparent(call.traceparent)

    telemetry.status()                            # for /health and the CLI
    tele.shutdown()                               # lifespan end

Test helpers live in ``telemetry.testing``.
"""

from __future__ import annotations

from telemetry import attributes
from telemetry.error_policy import (
    capture_error,
    capture_message,
    record_auth_failure,
    record_auth_success,
    report_errors,
)
from telemetry.otel_setup import (
    Telemetry,
    configure,
    current_traceparent,
    link_from_traceparent,
    status,
)
from telemetry.settings import TelemetrySettings

__all__ = [
    "Telemetry",
    "TelemetrySettings",
    "attributes",
    "capture_error",
    "capture_message",
    "configure",
    "current_traceparent",
    "link_from_traceparent",
    "record_auth_failure",
    "record_auth_success",
    "report_errors",
    "status",
]
