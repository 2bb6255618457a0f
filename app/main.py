"""The API application.

    app = create_app()            # settings from the environment
    uvicorn.run(app)

`create_app` wires routers, error handlers and telemetry; its lifespan owns the database
engine, the sessionmaker, the one shared `httpx.AsyncClient` (Bolna) and the workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import telemetry
from app.agents.router import router as agents_router
from app.auth.router import router as auth_router
from app.bolna.client import BolnaClient
from app.budget_store import DatabaseBudgetStore
from app.calls.router import router as calls_router
from app.campaigns.wiring import add_workers as add_campaign_workers
from app.campaigns.wiring import install as install_campaigns
from app.config import Settings, get_settings
from app.contacts.router import router as contacts_router
from app.credits.router import router as credits_router
from app.db import create_engine, create_sessionmaker, is_database_unavailable
from app.errors import AppError
from app.health import router as health_router
from app.webhooks.retry import retry_due
from app.webhooks.router import router as webhooks_router
from app.workers import Workers
from telemetry.settings import TelemetrySettings

log = logging.getLogger(__name__)
BUDGET_SYNC_SECONDS = 5.0
SHUTDOWN_BUDGET_SYNC_SECONDS = 2.0


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def _field_sentence(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        reason = str((error.get("ctx") or {}).get("error") or "it cannot be parsed")
        at = next((part for part in error.get("loc", ()) if isinstance(part, int)), None)
        where = f" at character {at}" if at is not None else ""
        return f"The request body is not valid JSON: {reason}{where}."
    parts = [str(part) for part in error.get("loc", ())]
    if parts[:1] == ["body"]:
        parts = parts[1:] or ["request body"]
    location = ".".join(parts)
    message = str(error.get("msg", "is invalid"))
    return f"{location}: {message}" if location else message


def _http_sentence(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's own 404/405 say only "Not Found"; say what was wrong instead."""
    detail = str(exc.detail)
    if detail != HTTPStatus(exc.status_code).phrase:
        return detail
    if exc.status_code == 404:
        return "There is no such endpoint; the API is described at /docs."
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        accepts = f"; it accepts {allowed}" if allowed else ""
        return f"This endpoint does not accept {request.method}{accepts}."
    return f"{detail}."


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": exc.challenge} if exc.challenge else None
        return JSONResponse(
            error_body(exc.code, exc.detail), status_code=exc.http_status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        sentences = [_field_sentence(dict(e)) for e in exc.errors()]
        detail = "; ".join(sentences[:5]) or "The request is invalid."
        return JSONResponse(error_body("validation_error", detail), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, _http_sentence(request, exc)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            telemetry.capture_error(exc, feature="database", path=request.url.path)
            return JSONResponse(
                error_body("service_unavailable", "The database is unavailable; try again."),
                status_code=503,
            )
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        telemetry.capture_error(exc, feature="http", path=request.url.path)
        return JSONResponse(
            error_body("internal_error", "Something went wrong on our side; it was reported."),
            status_code=500,
        )


def create_app(
    settings: Settings | None = None,
    *,
    telemetry_settings: TelemetrySettings | None = None,
    bolna_transport: httpx.AsyncBaseTransport | None = None,
    start_workers: bool = True,
) -> FastAPI:
    """Build the API. `bolna_transport` lets tests route Bolna traffic in-process."""
    settings = settings or get_settings()
    telemetry_settings = telemetry_settings or TelemetrySettings(app_env=settings.app_env)
    budget_store = DatabaseBudgetStore()
    tel = telemetry.configure(telemetry_settings, budget_store=budget_store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        budget_store.bind(sessionmaker)
        tel.instrument_engine(engine)
        http = httpx.AsyncClient(transport=bolna_transport)
        tel.instrument_httpx(http)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        app.state.http = http
        app.state.bolna = BolnaClient(http, settings)
        workers: Workers = app.state.workers
        workers.add(
            "webhook_retry",
            settings.webhook_retry_interval_seconds,
            lambda: retry_due(sessionmaker, settings),
            feature="webhook",
        )
        workers.add("telemetry_budget", BUDGET_SYNC_SECONDS, tel.sync_budget, feature="telemetry")
        app.state.campaigns = add_campaign_workers(
            workers, sessionmaker=sessionmaker, bolna=app.state.bolna, settings=settings
        )
        if start_workers:
            workers.start()
        try:
            yield
        finally:
            await app.state.campaigns.aclose()  # stop claiming; let dials in flight finish
            await workers.stop()
            await http.aclose()
            try:
                # Bounded: a store that stopped answering must not keep the process alive.
                async with asyncio.timeout(SHUTDOWN_BUDGET_SYNC_SECONDS):
                    await tel.sync_budget()
            except Exception:
                log.warning("could not save the error budget at shutdown", exc_info=True)
            await engine.dispose()
            tel.shutdown()

    app = FastAPI(
        title="Bolna calling backend",
        version=telemetry_settings.service_version,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.workers = Workers()
    app.state.telemetry = tel
    _install_error_handlers(app)
    for router in (
        health_router,
        auth_router,
        agents_router,
        contacts_router,
        calls_router,
        credits_router,
        webhooks_router,
    ):
        app.include_router(router)
    install_campaigns(app)
    tel.instrument_app(app)
    return app
