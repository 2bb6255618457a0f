"""`CurrentUser`: the authenticated user of a request (HS256 bearer JWT)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import trace

from app.auth.service import TokenClaims, TokenRejected, decode_token
from app.config import Settings
from app.errors import Unauthorized
from telemetry import attributes as attrs
from telemetry import record_auth_failure, record_auth_success

_bearer = HTTPBearer(auto_error=False, description="JWT from POST /auth/login")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def current_user(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims:
    client = request.client.host if request.client else "unknown"
    if credentials is None or credentials.scheme.lower() != "bearer":
        record_auth_failure("missing", client=client)
        raise Unauthorized("Send a bearer token: Authorization: Bearer <token>.")
    try:
        claims = decode_token(credentials.credentials, settings)
    except TokenRejected as exc:
        record_auth_failure(exc.reason, client=client)
        raise
    record_auth_success()
    trace.get_current_span().set_attribute(attrs.ENDUSER_ID, str(claims.user_id))
    return claims


CurrentUser = Annotated[TokenClaims, Depends(current_user)]
