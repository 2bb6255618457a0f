"""What can go wrong talking to Bolna.

ProviderError (app.errors)
└── BolnaError                 endpoint, bolna_status
    ├── BolnaRateLimited       429 after retries   → we answer 503, reported as warning
    ├── BolnaServerError       5xx after retries   → 502
    ├── BolnaTimeout           no answer in time   → 504
    ├── BolnaUnreachable       connection failed   → 503
    ├── BolnaUnauthorized      401/403: our key    → 502, reported (breaks every call)
    └── BolnaRejected          other 4xx           → 422, expected (the request was bad)
"""

from __future__ import annotations

from typing import ClassVar

from app.errors import ProviderError


class BolnaError(ProviderError):
    code = "bolna_error"
    level: ClassVar[str] = "error"

    def __init__(
        self, detail: str, *, endpoint: str, bolna_status: int | None = None, attempts: int = 1
    ) -> None:
        super().__init__(detail)
        self.endpoint = endpoint
        self.bolna_status = bolna_status
        self.attempts = attempts


class BolnaRateLimited(BolnaError):
    code = "bolna_rate_limited"
    http_status = 503
    level = "warning"


class BolnaServerError(BolnaError):
    code = "bolna_server_error"
    http_status = 502


class BolnaTimeout(BolnaError):
    code = "bolna_timeout"
    http_status = 504


class BolnaUnreachable(BolnaError):
    code = "bolna_unreachable"
    http_status = 503


class BolnaUnauthorized(BolnaError):
    code = "bolna_unauthorized"
    http_status = 502


class BolnaRejected(BolnaError):
    code = "bolna_rejected"
    http_status = 422
    expected = True
