from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

import telemetry

router = APIRouter(tags=["health"])
DB_CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness and readiness: 200 when the database answers, 503 naming what failed."""
    body: dict[str, Any] = {"status": "ok", "db": "ok"}
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_SECONDS):
            async with request.app.state.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:
        body["status"] = "degraded"
        body["db"] = f"unavailable: {type(exc).__name__}"
    body["workers"] = request.app.state.workers.status()
    body["telemetry"] = telemetry.status()
    return JSONResponse(body, status_code=200 if body["db"] == "ok" else 503)
