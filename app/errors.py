"""Domain errors. Services raise these; only the HTTP layer maps them to status codes.

    AppError                       (expected=False: a fault worth reporting)
    ├── NotFound                   404, expected
    ├── ValidationFailed           422, expected
    ├── Conflict                   409, expected
    ├── Unauthorized               401, expected (auth signals are counted separately)
    ├── Forbidden                  403, expected
    ├── PayloadTooLarge            413, expected
    ├── InsufficientCredits        402, expected
    ├── ServiceUnavailable         503 (database unreachable, pool exhausted)
    └── ProviderError              502/503/504 — Bolna failed (see app.bolna.errors)

`expected` tells the error policy whether the error is a user's mistake (never reported)
or a fault; the policy reads the attribute, never the message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    expected: ClassVar[bool] = False
    # Sent as `WWW-Authenticate` (RFC 9110: a 401 names the scheme that would work).
    challenge: ClassVar[str | None] = None

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context


class NotFound(AppError):
    code = "not_found"
    http_status = 404
    expected = True


class ValidationFailed(AppError):
    code = "validation_error"
    http_status = 422
    expected = True


class Conflict(AppError):
    code = "conflict"
    http_status = 409
    expected = True


class Unauthorized(AppError):
    code = "unauthorized"
    http_status = 401
    expected = True
    challenge: ClassVar[str | None] = "Bearer"


class Forbidden(AppError):
    code = "forbidden"
    http_status = 403
    expected = True


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    http_status = 413
    expected = True


class InsufficientCredits(AppError):
    code = "insufficient_credits"
    http_status = 402
    expected = True


class ServiceUnavailable(AppError):
    code = "service_unavailable"
    http_status = 503


class ProviderError(AppError):
    """The calling provider (Bolna) failed; subclasses in app.bolna.errors set the status."""

    code = "provider_error"
    http_status = 502
