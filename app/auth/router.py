from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.auth.deps import SettingsDep
from app.auth.service import authenticate, create_token
from app.db import SessionDep

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    email: str
    password: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"


@router.post("/login")
async def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenResponse:
    """Exchange email and password for a bearer token."""
    user = await authenticate(session, email=body.email, password=body.password)
    return TokenResponse(access_token=create_token(user.id, settings))
