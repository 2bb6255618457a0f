"""Service settings, read once from the environment (and `.env` when present).

Every variable is documented in README and `.env.example`. Telemetry has its own
settings (`telemetry.settings.TelemetrySettings`) read from the same environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.auth.network import IPNetwork, parse_networks

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"
DEV_BOLNA_API_KEY = "sim-dev-key"
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{Path('var') / 'app.db'}"


class ConfigError(Exception):
    """A setting makes the service unsafe or impossible to start; the message is one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = Field(10, ge=1)
    db_pool_timeout_seconds: float = Field(5.0, gt=0)
    # PostgreSQL: give up opening a connection, or waiting for any statement's answer,
    # after this long; without them a network partition hangs requests until TCP gives up.
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_statement_timeout_seconds: float = Field(30.0, gt=0)

    jwt_secret: str = DEV_JWT_SECRET
    jwt_expire_minutes: int = Field(60 * 24, ge=1)

    bolna_api_url: str = "http://127.0.0.1:8100"
    bolna_api_key: str = DEV_BOLNA_API_KEY
    bolna_connect_timeout_seconds: float = Field(3.0, gt=0)
    bolna_read_timeout_seconds: float = Field(10.0, gt=0)
    bolna_max_retries: int = Field(3, ge=0, le=10)
    bolna_backoff_base_seconds: float = Field(0.2, ge=0)
    bolna_backoff_max_seconds: float = Field(5.0, ge=0)
    bolna_webhook_token: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    bolna_from_phone_number: str = ""
    # Webhook intake: bodies over this many bytes are refused (413) before being read whole.
    webhook_max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # Comma-separated IPs/CIDRs allowed to post webhooks (Bolna's published address);
    # empty allows every address.
    bolna_webhook_allowed_ips: str = ""
    # Comma-separated IPs/CIDRs of our reverse proxies: only a request arriving from one of
    # them has its X-Forwarded-For read (see app.auth.network). Empty: never read.
    trusted_proxies: str = ""

    credits_per_minute: int = Field(10, ge=0)
    # A call is refused (402) unless the balance covers this many credits; 0 means one minute.
    min_call_credits: int = Field(0, ge=0)
    low_balance_threshold: int = Field(50, ge=0)

    webhook_retry_max_attempts: int = Field(8, ge=1)
    webhook_retry_base_seconds: float = Field(1.0, ge=0)
    webhook_retry_interval_seconds: float = Field(1.0, gt=0)
    # A stored delivery not applied within this long (its process died first) is picked
    # up by the retry worker.
    webhook_received_grace_seconds: float = Field(30.0, ge=0)

    # Campaigns (app/campaigns): scheduler and queue processor loops, claims and leases.
    campaign_tick_seconds: float = Field(1.0, gt=0)
    # A claimed item not dialed within this long (its process died) is reclaimed.
    campaign_lease_seconds: float = Field(300.0, gt=0)
    # A dialed item whose final webhook has not arrived after this long is marked failed.
    campaign_call_timeout_seconds: float = Field(3 * 3600.0, gt=0)
    # At most this many dials in flight per process (new claims wait for a free slot).
    campaign_claim_batch: int = Field(50, ge=1)
    # On shutdown, dials already started get this long to finish before being cancelled.
    campaign_drain_seconds: float = Field(15.0, ge=0)

    @property
    def min_credits_to_call(self) -> int:
        return self.min_call_credits or self.credits_per_minute

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def webhook_allowed_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.bolna_webhook_allowed_ips)

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    @model_validator(mode="after")
    def _refuse_bad_networks(self) -> Settings:
        for name, value in (
            ("BOLNA_WEBHOOK_ALLOWED_IPS", self.bolna_webhook_allowed_ips),
            ("TRUSTED_PROXIES", self.trusted_proxies),
        ):
            try:
                parse_networks(value)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from exc
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.app_env != "production":
            return self
        if not self.jwt_secret or self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
            raise ConfigError(
                "JWT_SECRET must be set to a random value of at least 32 characters in production"
            )
        if not self.bolna_api_key or self.bolna_api_key == DEV_BOLNA_API_KEY:
            raise ConfigError("BOLNA_API_KEY must be set to your Bolna API key in production")
        if not self.bolna_webhook_token:
            # Without it anyone who finds the URL can complete calls and move credits.
            raise ConfigError(
                "BOLNA_WEBHOOK_TOKEN must be set in production: webhooks without it are open "
                "to anyone"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
