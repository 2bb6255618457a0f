"""Passwords (argon2) and HS256 bearer tokens (PyJWT, `exp` required, algorithm pinned)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from opentelemetry import trace
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import Conflict, Unauthorized, ValidationFailed
from app.models import User
from telemetry import attributes as attrs

ALGORITHM = "HS256"
_hasher = PasswordHasher()


@functools.cache
def _unknown_user_hash() -> str:
    """Checked against when the email is unknown; no password matches it in practice."""
    return _hasher.hash("no user has this password: it only costs time")


_tracer = trace.get_tracer(__name__)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_token(user_id: int, settings: Settings, *, expires_in: timedelta | None = None) -> str:
    now = datetime.now(UTC)
    lifetime = (
        expires_in if expires_in is not None else timedelta(minutes=settings.jwt_expire_minutes)
    )
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


class TokenRejected(Unauthorized):
    """A bearer token failed verification; `reason` feeds the auth security signals."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class TokenClaims:
    user_id: int


def decode_token(token: str, settings: Settings) -> TokenClaims:
    with _tracer.start_as_current_span("auth.verify_token") as span:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            span.set_attribute(attrs.AUTH_RESULT, "malformed")
            raise TokenRejected("The bearer token is malformed.", "malformed") from exc
        if header.get("alg") != ALGORITHM:
            span.set_attribute(attrs.AUTH_RESULT, "foreign_algorithm")
            raise TokenRejected(
                "The bearer token uses an unsupported algorithm.", "foreign_algorithm"
            )
        try:
            claims = jwt.decode(
                token,
                settings.jwt_secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            span.set_attribute(attrs.AUTH_RESULT, "expired")
            raise TokenRejected("The bearer token has expired; log in again.", "expired") from exc
        except jwt.InvalidSignatureError as exc:
            span.set_attribute(attrs.AUTH_RESULT, "bad_signature")
            raise TokenRejected(
                "The bearer token's signature is invalid.", "bad_signature"
            ) from exc
        except jwt.InvalidTokenError as exc:
            span.set_attribute(attrs.AUTH_RESULT, "malformed")
            raise TokenRejected(f"The bearer token is invalid: {exc}.", "malformed") from exc
        try:
            user_id = int(claims["sub"])
        except (TypeError, ValueError) as exc:
            span.set_attribute(attrs.AUTH_RESULT, "malformed")
            raise TokenRejected("The bearer token's subject is invalid.", "malformed") from exc
        span.set_attribute(attrs.AUTH_RESULT, "ok")
        span.set_attribute(attrs.ENDUSER_ID, str(user_id))
        return TokenClaims(user_id=user_id)


async def require_existing_user(session: AsyncSession, claims: TokenClaims) -> None:
    """Refuse a valid token whose user no longer exists: one primary-key lookup.

    Without it such a token read empty lists and then failed on the first write (a
    foreign key violation answered 500 and reported as a fault).
    """
    if await session.scalar(select(User.id).where(User.id == claims.user_id)) is None:
        raise TokenRejected(
            "The bearer token's user no longer exists; log in again.", "unknown_user"
        )


async def create_user(session: AsyncSession, *, email: str, password: str) -> User:
    """Create a user with a zero balance (credits are granted through app.credits)."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationFailed("email must be an email address.")
    if len(password) < 8:
        raise ValidationFailed("password must be at least 8 characters long.")
    existing = await session.scalar(select(User).where(User.email == email))
    if existing is not None:
        raise Conflict(f"A user with email {email} already exists.")
    user = User(email=email, password_hash=hash_password(password), credits_balance=0)
    session.add(user)
    await session.flush()
    return user


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    with _tracer.start_as_current_span("auth.login") as span:
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        # An unknown email costs the same hash check, so timing does not tell which exist.
        password_hash = user.password_hash if user is not None else _unknown_user_hash()
        if not verify_password(password_hash, password) or user is None:
            span.set_attribute(attrs.AUTH_RESULT, "bad_credentials")
            raise Unauthorized("The email or password is incorrect.")
        span.set_attribute(attrs.AUTH_RESULT, "ok")
        span.set_attribute(attrs.ENDUSER_ID, str(user.id))
        return user
