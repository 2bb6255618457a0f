"""Telemetry fixtures: a fresh provider with an in-memory exporter per test, and a tiny
FastAPI app (SQL on in-memory SQLite, an outgoing httpx call to a MockTransport) driven
in-process. Every test ends with telemetry shut down and everything uninstrumented.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from telemetry.otel_setup import current
from telemetry.testing import SpanCapture, capture_spans, settings_for_tests

BOLNA = "http://bolna.test"


def _shut_down_leftover() -> None:
    leftover = current()
    if leftover is not None:
        leftover.shutdown(timeout_s=1.0)


@pytest.fixture(autouse=True)
def no_leftover_telemetry() -> Iterator[None]:
    """Tests elsewhere may leave telemetry configured (ASGITransport runs no lifespan)."""
    _shut_down_leftover()
    yield
    _shut_down_leftover()


@pytest.fixture
def capture() -> Iterator[SpanCapture]:
    with capture_spans(settings_for_tests()) as spans:
        yield spans


@pytest.fixture
def sql_as_spans() -> Iterator[SpanCapture]:
    """As ``capture``, with a span per SQL statement (``TELEMETRY_SQL_SPANS=spans``)."""
    with capture_spans(settings_for_tests(sql_spans="spans")) as spans:
        yield spans


@dataclass
class MiniApp:
    """The app under test and what its outgoing calls carried."""

    app: FastAPI
    engine: AsyncEngine
    outbound: httpx.AsyncClient
    outgoing_headers: list[httpx.Headers] = field(default_factory=list)

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url="http://api.test",
            headers=headers,
        )


def build_mini_app() -> MiniApp:
    engine = create_async_engine(
        "sqlite+aiosqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    outgoing: list[httpx.Headers] = []

    def bolna(request: httpx.Request) -> httpx.Response:
        outgoing.append(request.headers)
        return httpx.Response(200, json={"execution_id": "exec-1"})

    outbound = httpx.AsyncClient(transport=httpx.MockTransport(bolna), base_url=BOLNA)
    items = APIRouter(prefix="/items")

    @items.get("/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        async with engine.connect() as connection:
            row = (
                await connection.execute(text("SELECT :item_id AS id"), {"item_id": item_id})
            ).one()
        response = await outbound.post("/call", json={"recipient_phone_number": "+14155550123"})
        return {"id": row.id, "execution_id": response.json()["execution_id"]}

    app = FastAPI()
    app.include_router(items)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("exploded while calling +14155550123")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    return MiniApp(app=app, engine=engine, outbound=outbound, outgoing_headers=outgoing)


@pytest.fixture
async def mini() -> AsyncIterator[MiniApp]:
    app = build_mini_app()
    try:
        yield app
    finally:
        await app.outbound.aclose()
        await app.engine.dispose()


def instrument(capture: SpanCapture, mini: MiniApp, **app_options: Any) -> None:
    capture.telemetry.instrument_app(mini.app, **app_options)
    capture.telemetry.instrument_engine(mini.engine)
    capture.telemetry.instrument_httpx(mini.outbound)
