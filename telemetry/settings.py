"""Telemetry configuration, read from the environment.

Standard ``OTEL_*`` variables keep their standard meaning; the project's own
variables (``SENTRY_*``, ``TELEMETRY_*``, ``ERROR_BUDGET_MONTHLY``) are documented
in README and ``.env.example``.

    settings = TelemetrySettings()                 # from the environment
    settings = TelemetrySettings(app_env="test")   # explicit values win
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

AppEnv = Literal["development", "test", "production"]


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    app_env: AppEnv = Field("development", validation_alias=AliasChoices("APP_ENV", "app_env"))
    service_name: str = Field(
        "calling-backend", validation_alias=AliasChoices("OTEL_SERVICE_NAME", "service_name")
    )
    service_version: str = Field(
        "0.1.0", validation_alias=AliasChoices("SERVICE_VERSION", "service_version")
    )
    # Comma list of sentry, otlp, console, none. Empty means: "sentry" when
    # SENTRY_DSN is set, otherwise "none" (so `make run` needs no collector).
    traces_exporter: str = Field(
        "", validation_alias=AliasChoices("OTEL_TRACES_EXPORTER", "traces_exporter")
    )
    traces_sampler: str = Field(
        "parentbased_traceidratio",
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER", "traces_sampler"),
    )
    # Empty means 1.0 outside production, 0.1 in production.
    traces_sampler_arg: str = Field(
        "", validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG", "traces_sampler_arg")
    )
    otlp_endpoint: str = Field(
        "http://127.0.0.1:4318",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"),
    )
    otlp_headers: str = Field(
        "", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_HEADERS", "otlp_headers")
    )
    sentry_dsn: str = Field("", validation_alias=AliasChoices("SENTRY_DSN", "sentry_dsn"))
    # otlp: OTLP/HTTP to Sentry's OTLP endpoint (default); span_processor: SentrySpanProcessor.
    sentry_traces_mode: Literal["otlp", "span_processor"] = Field(
        "otlp", validation_alias=AliasChoices("SENTRY_TRACES_MODE", "sentry_traces_mode")
    )
    # sentry | otlp | log | none. Empty means "sentry" when SENTRY_DSN is set, else "log".
    error_backend: str = Field(
        "", validation_alias=AliasChoices("TELEMETRY_ERROR_BACKEND", "error_backend")
    )
    # Comma list of APP_ENV values whose errors are sent to the backend; others are logged.
    send_environments: str = Field(
        "production",
        validation_alias=AliasChoices("TELEMETRY_SEND_ENVIRONMENTS", "send_environments"),
    )
    error_budget_monthly: int = Field(
        5000, ge=0, validation_alias=AliasChoices("ERROR_BUDGET_MONTHLY", "error_budget_monthly")
    )
    dedupe_window_seconds: float = Field(
        60.0,
        ge=0,
        validation_alias=AliasChoices("TELEMETRY_DEDUPE_WINDOW_SECONDS", "dedupe_window_seconds"),
    )
    # Excluded from FastAPI server spans (comma list of URL regexes, standard meaning).
    excluded_urls: str = Field(
        "/health",
        validation_alias=AliasChoices("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "excluded_urls"),
    )
    # How SQL statements appear in traces: events (a db.query event per statement on the
    # enclosing span: statement, operation, duration), spans (a CLIENT span per
    # statement) or off.
    sql_spans: Literal["events", "spans", "off"] = Field(
        "events", validation_alias=AliasChoices("TELEMETRY_SQL_SPANS", "sql_spans")
    )
    # json | text. Empty means json in production, text elsewhere.
    log_format: str = Field("", validation_alias=AliasChoices("LOG_FORMAT", "log_format"))

    @property
    def resolved_traces_exporters(self) -> list[str]:
        raw = self.traces_exporter.strip()
        if not raw:
            return ["sentry"] if self.sentry_dsn else ["none"]
        return [name.strip().lower() for name in raw.split(",") if name.strip()]

    @property
    def resolved_error_backend(self) -> str:
        raw = self.error_backend.strip().lower()
        if raw:
            return raw
        return "sentry" if self.sentry_dsn else "log"

    @property
    def resolved_sampler_ratio(self) -> float:
        if self.traces_sampler_arg.strip():
            return float(self.traces_sampler_arg)
        return 0.1 if self.app_env == "production" else 1.0

    @property
    def sending_enabled(self) -> bool:
        allowed = {e.strip() for e in self.send_environments.split(",") if e.strip()}
        return self.app_env in allowed

    @property
    def resolved_log_format(self) -> str:
        if self.log_format.strip():
            return self.log_format.strip().lower()
        return "json" if self.app_env == "production" else "text"
