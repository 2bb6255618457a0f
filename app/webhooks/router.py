from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app.auth.deps import SettingsDep
from app.errors import Unauthorized
from app.webhooks.service import process, store

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class BadWebhookToken(Unauthorized):
    code = "invalid_webhook_token"


def verify_token(settings: SettingsDep, token: Annotated[str | None, Query()] = None) -> None:
    expected = settings.bolna_webhook_token
    if not expected:
        return
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise BadWebhookToken("The webhook token is missing or wrong.")


@router.post("/bolna", dependencies=[Depends(verify_token)])
async def bolna_webhook(request: Request, settings: SettingsDep) -> JSONResponse:
    """Bolna's call-status webhook. The body is stored before it is processed.

    200 when applied (or a harmless duplicate), 202 when stored for a later retry
    (unknown execution id yet, or processing failed), 400 for a body that is not a
    Bolna execution object.
    """
    raw = await request.body()
    sessionmaker = request.app.state.sessionmaker
    delivery = await store(sessionmaker, raw)
    outcome = await process(sessionmaker, delivery.id, settings)
    status_code = 200 if outcome.state in ("processed", "duplicate") else 202
    return JSONResponse(
        {"delivery_id": outcome.delivery_id, "state": outcome.state, "call_id": outcome.call_id},
        status_code=status_code,
    )
