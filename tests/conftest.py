"""Shared fixtures: a real database (SQLite file; PostgreSQL when marked and available), and
the whole stack in-process — the API and the Bolna simulator talking real HTTP semantics
through ASGI transports, the simulator's webhooks landing on the API.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.migrate import empty_postgres_tables, upgrade
from app.simulator import create_simulator_app, simulator_state
from telemetry.settings import TelemetrySettings
from telemetry.testing import observe_exports
from tests.pg import check_postgres_marker, postgres_param, require_postgres
from tests.security.pii_guard import GuardLogHandler, PiiGuard, report

API_BASE = "http://api.test"
BOLNA_BASE = "http://bolna.test"


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_postgres_marker(item)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> str:
    url = require_postgres()
    upgrade(url)
    return url


def _sqlite_copy(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    return _sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), postgres_param()])
async def database_url(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> str:
    """Parametrised: the test runs on SQLite and (marked `postgres`) on PostgreSQL."""
    if request.param == "sqlite":
        return _sqlite_copy(sqlite_template, tmp_path)
    url = request.getfixturevalue("migrated_postgres")
    await empty_postgres_tables(url)
    return str(url)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": database_url,
        "jwt_secret": "test-secret-with-at-least-32-characters!!",
        "bolna_api_url": BOLNA_BASE,
        "bolna_api_key": "test-bolna-key",
        "bolna_webhook_token": "test-webhook-token",
        "public_base_url": API_BASE,
        "bolna_backoff_base_seconds": 0.0,
        "bolna_backoff_max_seconds": 0.0,
        "bolna_read_timeout_seconds": 0.5,
        "bolna_max_retries": 2,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_interval_seconds": 0.05,
        "credits_per_minute": 10,
        "low_balance_threshold": 50,
    }
    values.update(overrides)
    return Settings(**values)


def quiet_telemetry(**overrides: Any) -> TelemetrySettings:
    values: dict[str, Any] = {
        "app_env": "test",
        "traces_exporter": "none",
        "error_backend": "log",
    }
    values.update(overrides)
    return TelemetrySettings(**values)


class ASGITransportWithTimeouts(httpx.ASGITransport):
    """ASGITransport ignores httpx timeouts; sockets don't. Enforce the read timeout so
    in-process tests see the same `httpx.ReadTimeout` a real network gives."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        limit = timeouts.get("read")
        if limit is None:
            return await super().handle_async_request(request)
        try:
            async with asyncio.timeout(limit):
                return await super().handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("read timed out", request=request) from exc


@dataclass
class Stack:
    app: FastAPI
    sim_app: FastAPI
    api: httpx.AsyncClient
    sim: httpx.AsyncClient
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def faults(self, **body: Any) -> None:
        response = await self.sim.post("/_sim/faults", json=body)
        response.raise_for_status()


@asynccontextmanager
async def running_stack(
    settings: Settings,
    *,
    telemetry_settings: TelemetrySettings | None = None,
    step_delay_ms: int = 2,
    start_workers: bool = True,
) -> AsyncIterator[Stack]:
    """API + simulator in-process; the API's lifespan runs (engine, client, workers)."""
    to_api = httpx.ASGITransport(app=None)  # type: ignore[arg-type]  # set below
    sim_app = create_simulator_app(
        public_base_url=settings.public_base_url,
        webhook_token=settings.bolna_webhook_token,
        api_key=settings.bolna_api_key,
        step_delay_ms=step_delay_ms,
        http_client=httpx.AsyncClient(transport=to_api, timeout=10),
    )
    app = create_app(
        settings,
        telemetry_settings=telemetry_settings or quiet_telemetry(),
        bolna_transport=ASGITransportWithTimeouts(app=sim_app),
        start_workers=start_workers,
    )
    to_api.app = app
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API_BASE) as api,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim_app), base_url=BOLNA_BASE) as sim,
    ):
        try:
            yield Stack(app=app, sim_app=sim_app, api=api, sim=sim, settings=settings)
        finally:
            await simulator_state(sim_app).aclose()


async def create_user_token(settings: Settings, email: str, credits: int) -> str:
    from app.auth.service import create_token, create_user
    from app.credits.service import grant
    from app.db import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            user = await create_user(session, email=email, password="password123")
            if credits:
                await grant(
                    session, user.id, credits, reason="grant", idempotency_key=f"signup:{user.id}"
                )
            return create_token(user.id, settings)
    finally:
        await engine.dispose()


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url)


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with running_stack(settings) as running:
        running.tokens["alice"] = await create_user_token(settings, "alice@example.com", 1000)
        running.tokens["bob"] = await create_user_token(settings, "bob@example.com", 1000)
        yield running


@pytest.fixture(autouse=True)
def _no_env_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests build their settings explicitly; a developer's .env must not change them."""
    for name in ("SENTRY_DSN", "OTEL_TRACES_EXPORTER", "TELEMETRY_ERROR_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(scope="session", autouse=True)
def _pii_guard() -> Iterator[PiiGuard]:
    """One observer on everything exported, and one root handler on every log record that
    reaches it, for the whole run (root levels untouched: caplog behaves as before)."""
    guard = PiiGuard()
    handler = GuardLogHandler(guard)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with observe_exports(guard.observe):
            yield guard
    finally:
        root.removeHandler(handler)
    leaks = guard.take()
    if leaks:
        pytest.fail(f"after the last test: {report(leaks)}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_pii_leaves(request: pytest.FixtureRequest, _pii_guard: PiiGuard) -> Iterator[None]:
    """Fails the test during which a raw phone number, JWT or test secret was exported
    or logged (see tests/security/pii_guard.py)."""
    yield
    leaks = _pii_guard.take()
    marker = request.node.get_closest_marker("allows_pii")
    if marker is not None:
        if not (marker.args or marker.kwargs.get("reason")):
            pytest.fail("@pytest.mark.allows_pii needs a reason", pytrace=False)
        return
    if leaks:
        pytest.fail(report(leaks), pytrace=False)
