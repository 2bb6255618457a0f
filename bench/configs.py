"""The telemetry configurations compared, by name.

Every configuration runs the same app with ``APP_ENV=production``; only telemetry differs.
Exporters send to ``bench.sink`` on loopback (a collector that keeps up), so the batch
processor's serialisation and HTTP cost is paid as in production.

- ``off``: ``OTEL_TRACES_EXPORTER=none``, error backend none (the baseline);
- ``off_b``: the same in a second worker process: how far two identical workers differ
  (the noise floor of the run);
- ``otel100`` / ``otel10``: OTel with our light hooks, OTLP/HTTP through the batch
  processor, sampling 100% / 10%;
- ``otel100_stock``: as ``otel100`` with the contrib FastAPI, SQLAlchemy and httpx instrumentors
  (``instrument_app(stock=True)``), the "stock" reference the issue quotes;
- ``otel100_noop``: 100%, spans through the scrubbing gate into an exporter that does
  nothing (no batch thread, no encoding): the on-request-path share of ``otel100``;
- ``span_processor``: OTel 100% with ``SENTRY_TRACES_MODE=span_processor`` (finished
  spans become Sentry transactions), envelopes over HTTP to the sink;
- ``sentry_native``: telemetry off, ``sentry_sdk.init(traces_sample_rate=1.0)`` with its
  default integrations (FastAPI, Starlette, SQLAlchemy, httpx...): the alternative;
- ``prod``: production defaults (OTLP at 10%, errors to Sentry), for the error storm;
- ``healthy`` / ``outage``: spans to OTLP and Sentry's OTLP endpoint, errors to Sentry,
  100% sampling; ``outage`` points all of it at closed loopback ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from telemetry.settings import TelemetrySettings

LABELS: Final[dict[str, str]] = {
    "off": "telemetry off (baseline)",
    "off_b": "telemetry off, a second worker (A/A control)",
    "otel100": "OTel 100%, batch → OTLP",
    "otel10": "OTel 10%, batch → OTLP",
    "otel100_stock": "OTel 100%, stock contrib instrumentors",
    "otel100_noop": "OTel 100%, no-op exporter (diagnostic)",
    "span_processor": "OTel 100%, SENTRY_TRACES_MODE=span_processor",
    "sentry_native": "sentry-sdk native tracing 100%",
    "prod": "production defaults (OTLP 10%, errors → Sentry)",
    "healthy": "OTLP + Sentry healthy (100%)",
    "outage": "OTLP + Sentry endpoints down (100%)",
}


@dataclass(frozen=True)
class Endpoints:
    """Where telemetry goes: the live sink, or a port nothing listens on."""

    sink_port: int
    closed_port: int

    def base(self, down: bool) -> str:
        return f"http://127.0.0.1:{self.closed_port if down else self.sink_port}"

    def dsn(self, down: bool) -> str:
        return f"http://benchkey@127.0.0.1:{self.closed_port if down else self.sink_port}/1"


def telemetry_settings(name: str, endpoints: Endpoints) -> TelemetrySettings:
    """The TelemetrySettings of configuration ``name`` (sentry_native: telemetry off)."""
    values: dict[str, Any] = {
        "app_env": "production",
        "traces_exporter": "none",
        "traces_sampler": "parentbased_traceidratio",
        "traces_sampler_arg": "1.0",
        "error_backend": "none",
        "sentry_dsn": "",
        "log_format": "json",
        "otlp_endpoint": endpoints.base(down=False),
    }
    if name in ("otel100", "otel10", "otel100_stock"):
        values["traces_exporter"] = "otlp"
        values["traces_sampler_arg"] = "0.1" if name == "otel10" else "1.0"
    elif name == "span_processor":
        values.update(
            traces_exporter="sentry",
            sentry_dsn=endpoints.dsn(down=False),
            sentry_traces_mode="span_processor",
        )
    elif name == "prod":
        values.update(
            traces_exporter="otlp",
            traces_sampler_arg="0.1",
            error_backend="sentry",
            sentry_dsn=endpoints.dsn(down=False),
        )
    elif name in ("healthy", "outage"):
        down = name == "outage"
        values.update(
            traces_exporter="otlp,sentry",
            otlp_endpoint=endpoints.base(down),
            sentry_dsn=endpoints.dsn(down),
            sentry_traces_mode="otlp",
            error_backend="sentry",
            # Every error event is sent (no collapsing), so the Sentry transport works too.
            dedupe_window_seconds=0.0,
        )
    elif name not in ("off", "off_b", "sentry_native", "otel100_noop"):
        raise ValueError(f"unknown configuration {name!r}; valid: {', '.join(LABELS)}")
    return TelemetrySettings(_env_file=None, **values)


def extra_span_exporters(name: str) -> list[Any]:
    """Exporters handed to ``telemetry.configure(span_exporters=...)``."""
    if name != "otel100_noop":
        return []
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return [NoopExporter()]


def uses_stock_instrumentation(name: str) -> bool:
    return name == "otel100_stock"


def uses_sentry_native(name: str) -> bool:
    return name == "sentry_native"
