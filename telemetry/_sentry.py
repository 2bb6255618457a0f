"""Everything that knows sentry-sdk: the one ``sentry_sdk.init`` call, Sentry's OTLP
endpoint, its span processor and the ``sentry-trace`` header.

OpenTelemetry owns tracing; Sentry receives errors (through the error policy) and,
when it is a traces backend, spans:

- ``SENTRY_TRACES_MODE=otlp`` (default): spans go by OTLP/HTTP to the endpoint
  derived from the DSN (``otlp_target``); sentry-sdk's tracing stays off and its
  ``OTLPIntegration`` only links error events to the current OTel trace.
- ``SENTRY_TRACES_MODE=span_processor``: ``_sentry_transactions.SentryTransactionExporter``
  turns finished OTel spans into transactions in the batch thread, runs this client's
  ``before_send_transaction`` and hands them to its transport: no Sentry-side sampling,
  sentry-sdk's own tracing stays off here too, the OTel sampler decides.

    init_sentry(settings)
    endpoint, headers = otlp_target(settings.sentry_dsn)
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sentry_sdk.integrations.otlp import OTLPIntegration
from sentry_sdk.utils import BadDsn, Dsn

from telemetry.settings import TelemetrySettings

logger = logging.getLogger(__name__)

SENTRY_TRACE_HEADER = "sentry-trace"
_OTLP_TRACES_PATH = "integration/otlp/v1/traces"


def otlp_target(dsn: str) -> tuple[str, dict[str, str]]:
    """Sentry's OTLP/HTTP traces endpoint and auth header for ``dsn``.

    ``https://KEY@o1.ingest.sentry.io/42`` gives
    ``https://o1.ingest.sentry.io/api/42/integration/otlp/v1/traces`` and
    ``{"x-sentry-auth": "sentry sentry_key=KEY"}``. A malformed DSN raises ValueError.
    """
    try:
        parsed = Dsn(dsn)
    except BadDsn as exc:
        raise ValueError(f"SENTRY_DSN is not a valid Sentry DSN: {exc}") from None
    endpoint = (
        f"{parsed.scheme}://{parsed.netloc}{parsed.path}api/{parsed.project_id}/{_OTLP_TRACES_PATH}"
    )
    return endpoint, {"x-sentry-auth": f"sentry sentry_key={parsed.public_key}"}


def init_sentry(
    settings: TelemetrySettings,
    *,
    transport: Any = None,
) -> bool:
    """Initialise sentry-sdk for this process; False (and nothing done) without a DSN.

    Explicit integrations only: no Starlette/FastAPI/logging auto-capture, so every
    error event comes through the error policy, which also runs as ``before_send``.
    ``transport`` replaces the HTTP transport (tests pass a capturing one).
    """
    if not settings.sentry_dsn:
        return False
    from telemetry import error_policy

    # Both traces modes leave sentry-sdk's tracing off (no traces_sample_rate, default
    # instrumenter): span-processor transactions reach the transport ready-made, with
    # no Sentry-side sampling.
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.app_env,
        release=settings.service_version,
        send_default_pii=False,
        include_local_variables=False,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[
            # Only its error<->trace linking: we build the exporter (behind the scrubber)
            # and the propagator (its own would replace W3C traceparent) ourselves.
            OTLPIntegration(
                setup_otlp_traces_exporter=False,
                setup_propagator=False,
                capture_exceptions=False,
            )
        ],
        before_send=error_policy.sentry_before_send,
        before_send_transaction=error_policy.sentry_before_send_transaction,
        transport=transport,
    )
    return True


def close_sentry(timeout_s: float) -> None:
    """Flush pending events within ``timeout_s`` and detach the client."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=max(timeout_s, 0.0))
    sentry_sdk.get_global_scope().set_client(None)


_SENTRY_TRACE = re.compile(r"^\s*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?\s*$", re.IGNORECASE)


class SentryTracePropagator(TextMapPropagator):
    """Reads and writes Sentry's ``sentry-trace: {trace_id}-{span_id}-{sampled}`` header.

    Put it before the W3C propagator in a composite: when a request carries both,
    ``traceparent`` wins. A ``sentry-trace`` without a sampled flag (a deferred
    decision) is decided by ``ratio`` on the trace id, as a new root would be.
    ``baggage`` (including Sentry's ``sentry-*`` entries) is left to the W3C baggage
    propagator, which forwards it unchanged.
    """

    def __init__(self, ratio: float = 1.0) -> None:
        self._bound = TraceIdRatioBased.get_bound_for_rate(ratio)

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        context = context if context is not None else Context()
        values = getter.get(carrier, SENTRY_TRACE_HEADER)
        match = _SENTRY_TRACE.match(values[0]) if values else None
        if match is None:
            return context
        trace_id, span_id = int(match[1], 16), int(match[2], 16)
        if trace_id == 0 or span_id == 0:
            return context
        flag = match[3]
        sampled = (
            flag == "1"
            if flag is not None
            else (trace_id & TraceIdRatioBased.TRACE_ID_LIMIT) < self._bound
        )
        span_context = SpanContext(
            trace_id=trace_id,
            span_id=span_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
        return trace.set_span_in_context(NonRecordingSpan(span_context), context)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return
        sampled = "1" if span_context.trace_flags.sampled else "0"
        setter.set(
            carrier,
            SENTRY_TRACE_HEADER,
            f"{trace.format_trace_id(span_context.trace_id)}-"
            f"{trace.format_span_id(span_context.span_id)}-{sampled}",
        )

    @property
    def fields(self) -> set[str]:
        return {SENTRY_TRACE_HEADER}
