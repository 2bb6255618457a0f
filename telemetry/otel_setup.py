"""One entry point for tracing, error reporting and log correlation: ``configure()``.

    telemetry = configure(TelemetrySettings())     # once per process (idempotent)
    telemetry.instrument_app(app)                  # FastAPI, /health excluded
    telemetry.instrument_engine(engine)            # SQLAlchemy (AsyncEngine or Engine)
    telemetry.instrument_httpx(client)             # the shared httpx.AsyncClient
    ...
    telemetry.shutdown()                           # flushes within timeout_s

Configuration (standard ``OTEL_*`` meanings, see ``TelemetrySettings``):

- ``OTEL_TRACES_EXPORTER``: comma list of ``sentry``, ``otlp``, ``console``, ``none``
  (``EXPORTERS``). Every exporter sits behind one scrubbing processor. An unknown name
  raises ValueError with one line listing the valid names.
- ``SENTRY_TRACES_MODE``: ``otlp`` (OTLP/HTTP to Sentry's endpoint derived from
  ``SENTRY_DSN``) or ``span_processor`` (finished spans become Sentry transactions in
  the batch thread: ``SentryTransactionExporter``).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: one sampling decision per
  trace, parent-based ratio by default (1.0 outside production, 0.1 in production).
- ``none`` (or nothing configured): no recording provider, no instrumentation.

Propagation: W3C ``traceparent`` + ``baggage`` in and out, plus ``sentry-trace`` when
Sentry is a traces backend. ``current_traceparent()`` and ``link_from_traceparent()``
let a later span (a webhook) link to the one that started the work (the call).

Telemetry never stops the app: a bad configuration name raises ValueError (a start-up
failure), anything else is logged ("telemetry disabled, your code still runs") and
tracing is left off, except under ``APP_ENV=test`` where it raises.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.re import parse_env_headers
from opentelemetry.util.types import Attributes

from telemetry import _instrumentation, _sentry, error_policy
from telemetry import attributes as attr
from telemetry._breaker import (
    CircuitBreaker,
    GuardedBatchSpanProcessor,
    GuardedSpanExporter,
    fail_fast_session,
    queue_size,
)
from telemetry._processors import ScrubbingSpanProcessor, format_console_span
from telemetry._sentry_transactions import SentryTransactionExporter, envelope_endpoint
from telemetry.logging import reset_logging, setup_logging
from telemetry.settings import TelemetrySettings

logger = logging.getLogger(__name__)

_OTLP_TRACES_PATH: Final = "/v1/traces"
# A dead endpoint costs one batch this long (the OTLP exporter retries within it); the
# breaker then drops spans for a back-off instead of queueing them (telemetry._breaker),
# and the queue never holds more than _MAX_QUEUED_SPANS per destination: memory stays
# bounded and spans beyond it are dropped, never waited for. (SDK defaults: 10 s, 2048.)
_EXPORT_TIMEOUT_S: Final = 5.0
_MAX_QUEUED_SPANS: Final = 1024
_TIMEOUT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
_W3C: Final = TraceContextTextMapPropagator()

# --- exporters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Exporter:
    """One configured span destination: the processor behind the scrubbing gate."""

    name: str
    processor: SpanProcessor
    exporter: SpanExporter | None = None
    endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    breaker: CircuitBreaker | None = None


def _otlp_exporter(name: str, endpoint: str, headers: Mapping[str, str]) -> Exporter:
    timeout = None if _env_sets(_TIMEOUT_VARIABLES) else _EXPORT_TIMEOUT_S
    exporter = OTLPSpanExporter(
        endpoint=endpoint, headers=dict(headers), timeout=timeout, session=fail_fast_session()
    )
    breaker = CircuitBreaker(f"{name} traces", endpoint)
    return Exporter(name, _batch(exporter, breaker), exporter, endpoint, dict(headers), breaker)


def _env_sets(names: Sequence[str]) -> bool:
    return any(os.environ.get(name, "").strip() for name in names)


def _batch(exporter: SpanExporter, breaker: CircuitBreaker) -> BatchSpanProcessor:
    """Export off the request path through a bounded queue behind ``breaker``; one per
    destination, so a destination that is down never holds back another's spans.
    ``OTEL_BSP_*`` win."""
    return GuardedBatchSpanProcessor(
        GuardedSpanExporter(exporter, breaker),
        breaker,
        max_queue_size=queue_size(
            _MAX_QUEUED_SPANS, "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
        ),
    )


def _sentry_exporters(settings: TelemetrySettings) -> list[Exporter]:
    if not settings.sentry_dsn:
        raise ValueError("OTEL_TRACES_EXPORTER=sentry needs SENTRY_DSN")
    if settings.sentry_traces_mode == "span_processor":
        # Transactions are built in the batch thread, off the request path.
        endpoint = envelope_endpoint(settings.sentry_dsn)
        exporter = SentryTransactionExporter(
            environment=settings.app_env, release=settings.service_version
        )
        breaker = CircuitBreaker("sentry transactions", endpoint)
        return [Exporter("sentry", _batch(exporter, breaker), exporter, endpoint, {}, breaker)]
    endpoint, headers = _sentry.otlp_target(settings.sentry_dsn)
    return [_otlp_exporter("sentry", endpoint, headers)]


def _otlp_exporters(settings: TelemetrySettings) -> list[Exporter]:
    endpoint = settings.otlp_endpoint.rstrip("/") + _OTLP_TRACES_PATH
    headers = parse_env_headers(settings.otlp_headers, liberal=True)
    return [_otlp_exporter("otlp", endpoint, headers)]


def _console_exporters(settings: TelemetrySettings) -> list[Exporter]:
    exporter = ConsoleSpanExporter(out=sys.stdout, formatter=format_console_span)
    return [Exporter("console", SimpleSpanProcessor(exporter), exporter)]


def _no_exporters(settings: TelemetrySettings) -> list[Exporter]:
    return []


ExporterBuilder = Callable[[TelemetrySettings], list[Exporter]]

EXPORTERS: Final[dict[str, ExporterBuilder]] = {
    "sentry": _sentry_exporters,
    "otlp": _otlp_exporters,
    "console": _console_exporters,
    "none": _no_exporters,
}


def exporter_names(settings: TelemetrySettings) -> list[str]:
    """The configured exporter names; ValueError (one line) for an unknown one."""
    names = settings.resolved_traces_exporters
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(map(repr, unknown))}; "
            f"valid names: {', '.join(EXPORTERS)}"
        )
    return names


# --- sampling, resource, propagation ---------------------------------------------------

SAMPLERS: Final[dict[str, Callable[[float], Sampler]]] = {
    "always_on": lambda ratio: ALWAYS_ON,
    "always_off": lambda ratio: ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased,
    "parentbased_always_on": lambda ratio: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda ratio: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda ratio: ParentBased(TraceIdRatioBased(ratio)),
}
_FIXED_RATIOS: Final = {
    "always_on": 1.0,
    "always_off": 0.0,
    "parentbased_always_on": 1.0,
    "parentbased_always_off": 0.0,
}


def _sampler_name(settings: TelemetrySettings) -> str:
    name = settings.traces_sampler.strip().lower() or "parentbased_traceidratio"
    if name not in SAMPLERS:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}"
        )
    return name


def sampling_ratio(settings: TelemetrySettings) -> float:
    """The share of new traces recorded, 0..1 (ValueError for a bad OTEL_TRACES_SAMPLER_ARG)."""
    name = _sampler_name(settings)
    if name in _FIXED_RATIOS:
        return _FIXED_RATIOS[name]
    try:
        ratio = settings.resolved_sampler_ratio
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, "
            f"got {settings.traces_sampler_arg!r}"
        )
    return ratio


def build_sampler(settings: TelemetrySettings) -> Sampler:
    """The one sampling decision, from OTEL_TRACES_SAMPLER and its argument."""
    return SAMPLERS[_sampler_name(settings)](sampling_ratio(settings))


_instance_ids: dict[int, str] = {}


def _service_instance_id() -> str:
    # One id per process: a forked worker gets its own.
    return _instance_ids.setdefault(os.getpid(), str(uuid.uuid4()))


def build_resource(settings: TelemetrySettings) -> Resource:
    return Resource.create(
        {
            attr.SERVICE_NAME: settings.service_name,
            attr.SERVICE_VERSION: settings.service_version,
            attr.DEPLOYMENT_ENVIRONMENT: settings.app_env,
            attr.SERVICE_INSTANCE_ID: _service_instance_id(),
        }
    )


def build_propagator(*, sentry: bool, ratio: float = 1.0) -> TextMapPropagator:
    """W3C tracecontext + baggage; ``sentry-trace`` too when Sentry receives traces.

    The Sentry propagator comes first so that, on extract, ``traceparent`` wins when a
    request carries both. sentry-sdk's own propagator is never installed: it would
    replace the W3C one.
    """
    propagators: list[TextMapPropagator] = [_W3C, W3CBaggagePropagator()]
    if sentry:
        propagators.insert(0, _sentry.SentryTracePropagator(ratio))
    return CompositePropagator(propagators)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None outside a valid span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def link_from_traceparent(traceparent: str | None, attributes: Attributes = None) -> list[Link]:
    """A one-element list with a Link to ``traceparent``'s span; empty if absent or invalid.

    ``tracer.start_as_current_span("webhook.process", links=link_from_traceparent(tp))``
    """
    if not traceparent:
        return []
    context = _W3C.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return [Link(span_context, attributes)] if span_context.is_valid else []


# --- the process-wide provider ---------------------------------------------------------


class _GlobalTracerProvider(trace.TracerProvider):
    """Installed once as OpenTelemetry's global provider; forwards to the current one.

    OpenTelemetry lets the global provider be set only once per process, and module
    level ``trace.get_tracer()`` tracers bind to it for good. Forwarding lets
    ``configure()`` run again after ``shutdown()`` (tests do, per test) while app code
    keeps its tracers.
    """

    def __init__(self) -> None:
        self.delegate: trace.TracerProvider = trace.NoOpTracerProvider()
        self.generation = 0

    def switch(self, provider: trace.TracerProvider) -> None:
        self.delegate = provider
        self.generation += 1

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _ForwardingTracer(
            self, instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )


class _ForwardingTracer(trace.Tracer):
    def __init__(
        self,
        owner: _GlobalTracerProvider,
        name: str,
        version: str | None,
        schema_url: str | None,
        attributes: Attributes,
    ) -> None:
        self._owner = owner
        self._args = (name, version, schema_url, attributes)
        self._generation = -1
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _current(self) -> trace.Tracer:
        owner = self._owner
        if self._generation != owner.generation:
            self._tracer = owner.delegate.get_tracer(*self._args)
            self._generation = owner.generation
        return self._tracer

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self._current().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    # OpenTelemetry's own decorator: usable on async functions, re-resolved per call.
    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        with self._current().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


_GLOBAL: Final = _GlobalTracerProvider()


def _install_global_provider() -> bool:
    if trace.get_tracer_provider() is _GLOBAL:
        return True
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        logger.warning(
            "another global TracerProvider is installed; spans from trace.get_tracer() "
            "go there, not to telemetry's exporters"
        )
        return False
    trace.set_tracer_provider(_GLOBAL)
    return trace.get_tracer_provider() is _GLOBAL


# --- the Telemetry object --------------------------------------------------------------


class Telemetry:
    """What ``configure()`` built: instrument the app's pieces with it, then shut it down."""

    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        traces_exporters: list[str],
        exporters: list[Exporter] | None = None,
        tracer_provider: SdkTracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        sentry_active: bool = False,
        error_policy_installed: bool = False,
        owns_global: bool = False,
    ) -> None:
        self.settings = settings
        self.traces_exporters = traces_exporters
        self.exporters: tuple[Exporter, ...] = tuple(exporters or ())
        self._sdk_provider = tracer_provider
        self.meter_provider = meter_provider
        self._sentry_active = sentry_active
        self._error_policy_installed = error_policy_installed
        self._owns_global = owns_global
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.is_shut_down = False

    @property
    def tracing(self) -> bool:
        """True when spans are recorded and exported (False for ``none``)."""
        return self._sdk_provider is not None

    @property
    def tracer_provider(self) -> trace.TracerProvider:
        """The SDK provider, or a no-op one when tracing is off."""
        return self._sdk_provider if self._sdk_provider is not None else trace.NoOpTracerProvider()

    def _instrument(
        self, what: str, instrument: Callable[[SdkTracerProvider], Callable[[], None]]
    ) -> None:
        provider = self._sdk_provider
        if provider is None or self.is_shut_down:
            return  # tracing off: no hooks at all
        try:
            undo = instrument(provider)
        except Exception:
            if self.settings.app_env == "test":
                raise
            logger.warning("could not instrument %s; your code still runs", what, exc_info=True)
            return
        with self._lock:
            self._undo.append(undo)

    def instrument_app(
        self, app: Any, *, stock: bool = False, asgi_sub_spans: bool = False
    ) -> None:
        """Trace ``app``'s requests, one server span each (none for excluded URLs: /health).

        ``stock=True`` uses the contrib FastAPI instrumentation instead of ours;
        ``asgi_sub_spans=True`` (implies stock) adds its ``send``/``receive`` spans.
        """
        self._instrument(
            "FastAPI app",
            lambda provider: _instrumentation.instrument_fastapi(
                app,
                provider,
                excluded_urls=self.settings.excluded_urls,
                stock=stock,
                asgi_sub_spans=asgi_sub_spans,
            ),
        )

    def instrument_engine(self, engine: Any, *, stock: bool = False) -> None:
        """Trace SQL statements run by ``engine`` (an AsyncEngine or Engine) inside traces.

        As ``db.query`` events on the enclosing span, or as spans of their own, or not at
        all, by ``TELEMETRY_SQL_SPANS`` (``events``, ``spans``, ``off``).
        """
        self._instrument(
            "SQLAlchemy engine",
            lambda provider: _instrumentation.instrument_sqlalchemy(
                engine, provider, stock=stock, mode=self.settings.sql_spans
            ),
        )

    def instrument_httpx(self, client: Any, *, stock: bool = False) -> None:
        """Trace ``client``'s requests and send ``traceparent`` (and ``sentry-trace``) with them.

        ``stock=True`` uses the contrib httpx instrumentation instead of ours.
        """
        self._instrument(
            "httpx client",
            lambda provider: _instrumentation.instrument_httpx(client, provider, stock=stock),
        )

    def status(self) -> dict[str, Any]:
        """``{traces_exporters, error_backend, environment, sending, budget, dropped, exports}``.

        ``exports``: per span destination, its breaker's state and counts
        (``state``, ``exported``, ``failed``, ``dropped`` spans).
        """
        settings = self.settings
        report: dict[str, Any] = {
            "traces_exporters": list(self.traces_exporters),
            "error_backend": settings.resolved_error_backend,
            "environment": settings.app_env,
            "sending": settings.sending_enabled,
            "budget": None,
            "dropped": {},
        }
        if self._error_policy_installed:
            try:
                report.update(error_policy.status())
            except Exception:
                logger.warning("error policy status unavailable", exc_info=True)
            report["traces_exporters"] = list(self.traces_exporters)
        report["exports"] = {
            e.name: e.breaker.status() for e in self.exporters if e.breaker is not None
        }
        return report

    async def sync_budget(self) -> None:
        """Reconcile the error budget with the shared store (the app calls it periodically)."""
        if self._error_policy_installed:
            await error_policy.sync_budget()

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        if self._sdk_provider is None:
            return True
        return self._sdk_provider.force_flush(int(timeout_s * 1000))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Uninstrument, flush and close everything within about ``timeout_s`` seconds."""
        global _current
        with self._lock:
            if self.is_shut_down:
                return
            self.is_shut_down = True
            undo, self._undo = self._undo, []
        deadline = time.monotonic() + timeout_s
        for step in reversed(undo):
            _quietly(step, "uninstrument")
        if self._owns_global and _GLOBAL.delegate is self._sdk_provider:
            _GLOBAL.switch(trace.NoOpTracerProvider())
        if self._error_policy_installed:
            remaining = max(deadline - time.monotonic(), 0.0)
            _quietly(lambda: error_policy.uninstall(timeout=remaining), "close the error policy")
        if self._sdk_provider is not None:
            _bounded(self._sdk_provider.shutdown, deadline - time.monotonic(), "span export")
        if self._sentry_active:
            _quietly(lambda: _sentry.close_sentry(deadline - time.monotonic()), "close Sentry")
        if self.meter_provider is not None:
            meters = self.meter_provider
            _bounded(meters.shutdown, deadline - time.monotonic(), "metrics")
        reset_logging()
        with _configure_lock:
            if _current is self:
                _current = None


def _quietly(step: Callable[[], object], what: str) -> None:
    try:
        step()
    except Exception:
        logger.warning("telemetry shutdown: could not %s", what, exc_info=True)


def _bounded(step: Callable[[], object], timeout_s: float, what: str) -> None:
    """Run ``step`` in a daemon thread and wait at most ``timeout_s`` for it."""
    worker = threading.Thread(
        target=_quietly, args=(step, f"finish {what}"), name="telemetry-shutdown", daemon=True
    )
    worker.start()
    worker.join(max(timeout_s, 0.0))
    if worker.is_alive():
        logger.warning("telemetry shutdown: %s still pending after the timeout; abandoned", what)


# --- configure -------------------------------------------------------------------------

_configure_lock = threading.RLock()
_current: Telemetry | None = None
_atexit_registered = False


def configure(
    settings: TelemetrySettings | None = None,
    *,
    budget_store: Any = None,
    span_exporters: Sequence[SpanExporter] | None = None,
    set_global: bool = True,
    sentry_transport: Any = None,
) -> Telemetry:
    """Set up tracing, the error policy and log correlation for this process.

    Idempotent: while the returned object is not shut down, later calls return it.

    - ``settings``: defaults to ``TelemetrySettings()`` (the environment).
    - ``budget_store``: the error budget's shared store (``telemetry.budget.BudgetStore``).
    - ``span_exporters``: extra exporters behind the scrubber (tests: an in-memory one);
      they switch tracing on even when ``OTEL_TRACES_EXPORTER=none``.
    - ``set_global``: install the global tracer provider (for ``trace.get_tracer()``
      in app code) and propagator. Instrumentation always gets the provider explicitly.
    - ``sentry_transport``: replaces sentry-sdk's HTTP transport (tests).
    """
    global _current, _atexit_registered
    with _configure_lock:
        if _current is not None and not _current.is_shut_down:
            return _current
        settings = settings if settings is not None else TelemetrySettings()
        try:
            telemetry = _build(settings, budget_store, span_exporters, set_global, sentry_transport)
        except ValueError:
            raise
        except Exception:
            if settings.app_env == "test":
                raise
            logger.warning(
                "telemetry disabled, your code still runs (failed to configure)", exc_info=True
            )
            telemetry = Telemetry(settings, traces_exporters=["none"])
        _current = telemetry
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        return telemetry


def current() -> Telemetry | None:
    """The configured, not shut down Telemetry, if any."""
    return _current


def status() -> dict[str, Any]:
    """The current setup's ``Telemetry.status()``; before ``configure()``, the error policy's."""
    telemetry = _current
    if telemetry is not None:
        return telemetry.status()
    report: dict[str, Any] = {"traces_exporters": ["none"]}
    report.update(error_policy.status())
    return report


def _shutdown_at_exit() -> None:
    if _current is not None:
        _current.shutdown(timeout_s=2.0)


def _build(
    settings: TelemetrySettings,
    budget_store: Any,
    span_exporters: Sequence[SpanExporter] | None,
    set_global: bool,
    sentry_transport: Any,
) -> Telemetry:
    names = exporter_names(settings)
    sampler = build_sampler(settings)
    ratio = sampling_ratio(settings)
    sentry_traces = "sentry" in names
    cleanup: list[Callable[[], None]] = []
    try:
        exporters = [exporter for name in names for exporter in EXPORTERS[name](settings)]
        exporters += [
            Exporter("extra", SimpleSpanProcessor(exporter), exporter)
            for exporter in span_exporters or ()
        ]
        resource = build_resource(settings)
        meter_provider = MeterProvider(resource=resource, shutdown_on_exit=False)
        cleanup.append(meter_provider.shutdown)

        sentry_active = False
        if sentry_traces or settings.resolved_error_backend == "sentry":
            sentry_active = _sentry.init_sentry(settings, transport=sentry_transport)
            if sentry_active:
                cleanup.append(lambda: _sentry.close_sentry(1.0))

        provider: SdkTracerProvider | None = None
        if exporters:
            provider = SdkTracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
            provider.add_span_processor(ScrubbingSpanProcessor(e.processor for e in exporters))
            cleanup.append(provider.shutdown)

        owns_global = False
        if set_global:
            propagate.set_global_textmap(build_propagator(sentry=sentry_traces, ratio=ratio))
            if provider is not None and _install_global_provider():
                _GLOBAL.switch(provider)
                owns_global = True
                cleanup.append(lambda: _GLOBAL.switch(trace.NoOpTracerProvider()))

        error_policy.install(settings, budget_store=budget_store, meter_provider=meter_provider)
        cleanup.append(error_policy.uninstall)
        setup_logging(settings)
    except BaseException:
        for step in reversed(cleanup):
            _quietly(step, "undo a partial configuration")
        raise
    return Telemetry(
        settings,
        traces_exporters=names if exporters else ["none"],
        exporters=exporters,
        tracer_provider=provider,
        meter_provider=meter_provider,
        sentry_active=sentry_active,
        error_policy_installed=True,
        owns_global=owns_global,
    )
