"""`POST /webhooks/bolna`: checked in order, each before anything is read or stored.

1. the caller's address is on `BOLNA_WEBHOOK_ALLOWED_IPS` when that is set (403);
2. `?token=` equals `BOLNA_WEBHOOK_TOKEN` when that is set, compared in constant time (401);
3. the body is at most `WEBHOOK_MAX_BODY_BYTES`: a larger `Content-Length` is refused
   before reading, and a body without one (chunked) is counted as it streams in (413).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app.auth.deps import ClientAddress, SettingsDep
from app.auth.network import is_allowed
from app.errors import Forbidden, PayloadTooLarge, Unauthorized, ValidationFailed
from app.webhooks.service import process, store

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class BadWebhookToken(Unauthorized):
    code = "invalid_webhook_token"
    challenge = None  # the token travels in the URL, not in an Authorization header


class WebhookSourceNotAllowed(Forbidden):
    code = "webhook_source_not_allowed"


class WebhookTooLarge(PayloadTooLarge):
    code = "webhook_too_large"


class BadContentLength(ValidationFailed):
    code = "invalid_content_length"
    http_status = 400


def verify_source(settings: SettingsDep, client: ClientAddress) -> None:
    if not is_allowed(client, settings.webhook_allowed_networks):
        raise WebhookSourceNotAllowed(
            f"Webhooks are accepted only from the addresses in BOLNA_WEBHOOK_ALLOWED_IPS; "
            f"this request came from {client}."
        )


def verify_token(settings: SettingsDep, token: Annotated[str | None, Query()] = None) -> None:
    expected = settings.bolna_webhook_token
    if not expected:
        return
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise BadWebhookToken("The webhook token is missing or wrong.")


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = WebhookTooLarge(f"The webhook body is larger than the limit of {limit} bytes.")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadContentLength("The Content-Length header is not a number of bytes.")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/bolna", dependencies=[Depends(verify_source), Depends(verify_token)])
async def bolna_webhook(request: Request, settings: SettingsDep) -> JSONResponse:
    """Bolna's call-status webhook. The body is stored before it is processed.

    200 when applied (or a harmless duplicate), 202 when stored for a later retry
    (unknown execution id yet, or processing failed), 400 for a body that is not a
    Bolna execution object, 401 for a missing or wrong `token`, 403 for a caller outside
    `BOLNA_WEBHOOK_ALLOWED_IPS`, 413 for a body over `WEBHOOK_MAX_BODY_BYTES`.
    """
    raw = await read_limited_body(request, settings.webhook_max_body_bytes)
    sessionmaker = request.app.state.sessionmaker
    delivery = await store(sessionmaker, raw, settings)
    outcome = await process(sessionmaker, delivery.id, settings)
    status_code = 200 if outcome.state in ("processed", "duplicate") else 202
    return JSONResponse(
        {"delivery_id": outcome.delivery_id, "state": outcome.state, "call_id": outcome.call_id},
        status_code=status_code,
    )
