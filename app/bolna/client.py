"""Bolna HTTP client: `POST /call` with timeouts, jittered backoff and typed errors.

    client = BolnaClient(http, settings)
    execution_id = await client.make_call(agent_id=..., recipient_phone_number="+9198...")

Retries 429, 5xx and transport errors (honouring `Retry-After` when present) up to
`BOLNA_MAX_RETRIES` times; never retries other 4xx. Each retry is a span event on the
`bolna.make_call` span; the HTTP requests themselves are spans of the httpx instrumentation.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from app.bolna.errors import (
    BolnaError,
    BolnaRateLimited,
    BolnaRejected,
    BolnaServerError,
    BolnaTimeout,
    BolnaUnauthorized,
    BolnaUnreachable,
)
from app.config import Settings
from telemetry import attributes as attrs

_tracer = trace.get_tracer(__name__)
CALL_ENDPOINT = "/call"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After wins (capped)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_seconds)
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:200]
    return str(body)[:200]


class BolnaClient:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._base_url = settings.bolna_api_url.rstrip("/")
        self._api_key = settings.bolna_api_key
        self._timeout = httpx.Timeout(
            settings.bolna_read_timeout_seconds, connect=settings.bolna_connect_timeout_seconds
        )
        self._retry = RetryPolicy(
            settings.bolna_max_retries,
            settings.bolna_backoff_base_seconds,
            settings.bolna_backoff_max_seconds,
        )

    async def make_call(
        self,
        *,
        agent_id: str,
        recipient_phone_number: str,
        from_phone_number: str | None = None,
        user_data: dict[str, Any] | None = None,
    ) -> str:
        """Ask Bolna to place a call; returns the execution id."""
        body: dict[str, Any] = {
            "agent_id": agent_id,
            "recipient_phone_number": recipient_phone_number,
        }
        if from_phone_number:
            body["from_phone_number"] = from_phone_number
        if user_data:
            body["user_data"] = user_data
        with _tracer.start_as_current_span("bolna.make_call") as span:
            span.set_attribute(attrs.BOLNA_ENDPOINT, CALL_ENDPOINT)
            span.set_attribute(attrs.AGENT_ID, agent_id)
            try:
                data = await self._post(CALL_ENDPOINT, body, span)
            except BolnaError as exc:
                span.set_status(Status(StatusCode.ERROR, exc.code))
                span.set_attribute(attrs.ERROR_TYPE, type(exc).__name__)
                raise
            execution_id = data.get("execution_id") or data.get("id")
            if not execution_id:
                raise BolnaServerError(
                    "Bolna accepted the call but returned no execution id.",
                    endpoint=CALL_ENDPOINT,
                    bolna_status=200,
                )
            span.set_attribute(attrs.BOLNA_EXECUTION_ID, str(execution_id))
            return str(execution_id)

    async def _post(self, endpoint: str, body: dict[str, Any], span: trace.Span) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        url = self._base_url + endpoint
        attempt = 0
        while True:
            attempt += 1
            span.set_attribute(attrs.BOLNA_ATTEMPT, attempt)
            retry_after: float | None = None
            try:
                response = await self._http.post(
                    url, json=body, headers=headers, timeout=self._timeout
                )
            except httpx.TimeoutException as exc:
                failure: BolnaError = BolnaTimeout(
                    f"Bolna did not answer {endpoint} in time.", endpoint=endpoint, attempts=attempt
                )
                cause: BaseException = exc
            except httpx.TransportError as exc:
                failure = BolnaUnreachable(
                    f"Bolna could not be reached for {endpoint}.",
                    endpoint=endpoint,
                    attempts=attempt,
                )
                cause = exc
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        data = response.json()
                    except ValueError as exc:
                        raise BolnaServerError(
                            f"Bolna answered {endpoint} with a body that is not JSON.",
                            endpoint=endpoint,
                            bolna_status=status,
                            attempts=attempt,
                        ) from exc
                    return data if isinstance(data, dict) else {}
                message = _error_message(response)
                if status in (401, 403):
                    raise BolnaUnauthorized(
                        f"Bolna refused our API key ({status}): {message}",
                        endpoint=endpoint,
                        bolna_status=status,
                        attempts=attempt,
                    )
                if status == 429:
                    retry_after = _retry_after_seconds(response)
                    failure = BolnaRateLimited(
                        "Bolna is rate limiting calls; try again shortly.",
                        endpoint=endpoint,
                        bolna_status=status,
                        attempts=attempt,
                    )
                elif status >= 500:
                    failure = BolnaServerError(
                        f"Bolna failed with {status}: {message}",
                        endpoint=endpoint,
                        bolna_status=status,
                        attempts=attempt,
                    )
                else:
                    raise BolnaRejected(
                        f"Bolna rejected the call ({status}): {message}",
                        endpoint=endpoint,
                        bolna_status=status,
                        attempts=attempt,
                    )
                cause = failure
            if attempt > self._retry.max_retries:
                if cause is failure:
                    raise failure
                raise failure from cause
            delay = self._retry.delay(attempt, retry_after)
            span.add_event(
                "bolna.retry",
                {
                    attrs.BOLNA_ATTEMPT: attempt,
                    attrs.ERROR_TYPE: type(failure).__name__,
                    "app.retry.delay_seconds": round(delay, 3),
                },
            )
            await asyncio.sleep(delay)
