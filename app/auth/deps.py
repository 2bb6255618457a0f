"""`CurrentUser`: the authenticated user of a request (HS256 bearer JWT, user still exists).

`ClientAddress` is the caller's IP address: the TCP peer, or `X-Forwarded-For` read
behind the proxies listed in `TRUSTED_PROXIES` (see `app.auth.network`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import trace

from app.auth.network import UNKNOWN_CLIENT, client_address
from app.auth.service import TokenClaims, TokenRejected, decode_token, require_existing_user
from app.config import Settings
from app.db import SessionDep
from app.errors import Unauthorized
from telemetry import attributes as attrs
from telemetry import record_auth_failure, record_auth_success

_bearer = HTTPBearer(auto_error=False, description="JWT from POST /auth/login")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_client_address(request: Request, settings: SettingsDep) -> str:
    peer = request.client.host if request.client else None
    if peer is None:
        return UNKNOWN_CLIENT
    return client_address(
        peer,
        request.headers.getlist("x-forwarded-for"),
        trusted=settings.trusted_proxy_networks,
    )


ClientAddress = Annotated[str, Depends(get_client_address)]


async def current_user(
    settings: SettingsDep,
    session: SessionDep,
    client: ClientAddress,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        record_auth_failure("missing", client=client)
        raise Unauthorized("Send a bearer token: Authorization: Bearer <token>.")
    try:
        claims = decode_token(credentials.credentials, settings)
        await require_existing_user(session, claims)
    except TokenRejected as exc:
        record_auth_failure(exc.reason, client=client)
        raise
    record_auth_success()
    trace.get_current_span().set_attribute(attrs.ENDUSER_ID, str(claims.user_id))
    return claims


CurrentUser = Annotated[TokenClaims, Depends(current_user)]
