"""A fake Bolna API for local runs and tests.

    sim = create_simulator_app(public_base_url="http://127.0.0.1:8000", webhook_token="s3cret",
                               api_key="test-key", step_delay_ms=200)

It answers ``POST /call`` like Bolna (``{"message": "done", "status": "queued",
"execution_id": ...}``, 401 ``Access denied``, 422 for a missing field or a non-E.164 number)
and then POSTs one webhook per status to ``{public_base_url}/webhooks/bolna?token=...``
(no ``?token=`` when the token is empty), ``step_delay_ms`` apart, the first one included:

- completed: queued, initiated, ringing, in-progress, call-disconnected, completed
- busy / no-answer / failed: queued, initiated, ringing, <outcome>

Each body is the execution object, also served by ``GET /executions/{id}``. A webhook
answered with a non-2xx or not answered is retried a few times with a short backoff, then
given up. The order of checks on ``POST /call``: latency, API key, call fault, body.

Test hooks (no API key needed):

- ``GET /_sim/calls``: the calls placed, with ``status`` and ``finished_at`` (set once the
  last webhook was delivered or given up) and the incoming ``traceparent``.
- ``GET /_sim/requests``: every ``POST /call`` attempt, faulted ones included, with the
  status code answered (null if the client left first).
- ``GET /_sim/faults``; ``POST /_sim/faults`` with any part of::

    {"call": {"mode": "ok" | "500" | "503" | "429" | "401" | "timeout",
              "count": 2,          # next 2 requests, then back to "ok"; omitted: until changed
              "retry_after": 1,    # Retry-After header on 429/503; omitted: no header
              "timeout_s": 30},    # "timeout" holds the request this long, then answers 504
     "webhooks": {"outcome": "completed" | "busy" | "no-answer" | "failed",
                  "outcomes": ["busy", "no-answer"],  # one per call, then back to "outcome"
                  "duplicate": true,     # every webhook sent twice
                  "out_of_order": true,  # adjacent statuses swapped, a late "ringing" at the end
                  "malformed": true},    # first a body that is not JSON, then one with no id
     "latency_ms": 0,        # added before every POST /call answer
     "step_delay_ms": 200}   # between webhooks, read at each step

  Omitted parts keep their value; ``call`` is replaced whole, ``webhooks`` field by field.
  A faulted request creates no execution.
- ``POST /_sim/reset``: defaults back, in-flight webhooks cancelled, calls forgotten.

In-process use: pass ``http_client=httpx.AsyncClient(transport=httpx.ASGITransport(api))``
so webhooks reach the API without a socket. ASGITransport runs no lifespan: call
``await simulator_state(sim).aclose()`` when done (the lifespan does it under uvicorn).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.simulator._faults import (
    CallFault,
    FaultConfig,
    FaultsUpdate,
    consume_call_fault,
    consume_outcome,
    merge_faults,
)
from app.simulator._scenario import (
    CallScenario,
    Outcome,
    WebhookStep,
    execution_snapshot,
    new_scenario,
    plan_webhooks,
    render_webhook,
    status_rank,
)

logger = logging.getLogger(__name__)

E164: Final = re.compile(r"^\+[1-9]\d{6,14}$")
DEFAULT_FROM_NUMBER: Final = "+15550100000"
_WEBHOOK_HEADERS: Final = {"content-type": "application/json", "user-agent": "bolna-simulator/1"}
_FAULT_STATUS: Final[dict[str, tuple[int, str]]] = {
    "500": (500, "Internal server error"),
    "503": (503, "Service temporarily unavailable"),
    "429": (429, "Too many requests"),
    "401": (401, "Access denied"),
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _error(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": status_code, "message": message}, status_code, headers=headers)


@dataclass(slots=True)
class CallRecord:
    """A call the simulator accepted, as ``GET /_sim/calls`` lists it."""

    execution_id: str
    agent_id: str
    recipient_phone_number: str
    from_phone_number: str
    user_data: dict[str, Any]
    outcome: Outcome
    received_at: str
    received_monotonic: float
    headers_traceparent: str | None
    status: str = "queued"
    finished_at: str | None = None
    webhooks_delivered: int = 0
    webhooks_failed: int = 0


@dataclass(slots=True)
class RequestRecord:
    """One ``POST /call`` attempt, accepted or not."""

    received_at: str
    received_monotonic: float
    headers_traceparent: str | None
    fault_mode: str | None = None
    status_code: int | None = None
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class _CallRequest:
    agent_id: str
    recipient_phone_number: str
    from_phone_number: str
    user_data: dict[str, Any]


class SimulatorState:
    """Everything one simulator app holds: configuration, faults, calls and webhook tasks."""

    def __init__(
        self,
        *,
        public_base_url: str,
        webhook_token: str,
        api_key: str,
        step_delay_ms: int,
        http_client: httpx.AsyncClient | None,
        seed: int | None,
        webhook_max_attempts: int,
        webhook_backoff_ms: int,
    ) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self.webhook_token = webhook_token
        self.api_key = api_key
        self.webhook_max_attempts = max(1, webhook_max_attempts)
        self.webhook_backoff_s = webhook_backoff_ms / 1000
        self._default_faults = FaultConfig(step_delay_ms=step_delay_ms)
        self._seed = seed
        self._http_client = http_client
        self._owns_http_client = http_client is None
        self._tasks: set[asyncio.Task[None]] = set()
        self.faults = self._default_faults
        self.rng = random.Random(seed)
        self.calls: dict[str, CallRecord] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.requests: list[RequestRecord] = []

    @property
    def webhook_url(self) -> str:
        url = f"{self.public_base_url}/webhooks/bolna"
        return f"{url}?{urlencode({'token': self.webhook_token})}" if self.webhook_token else url

    @property
    def busy(self) -> bool:
        """Whether webhooks are still being played."""
        return bool(self._tasks)

    def authorized(self, request: Request) -> bool:
        return not self.api_key or request.headers.get("authorization") == f"Bearer {self.api_key}"

    def take_call_fault(self) -> CallFault:
        fault, self.faults = consume_call_fault(self.faults)
        return fault

    def update_faults(self, update: FaultsUpdate) -> FaultConfig:
        self.faults = merge_faults(self.faults, update)
        return self.faults

    def start_call(self, call: _CallRequest, *, traceparent: str | None) -> CallRecord:
        """Create the execution and start playing its webhooks in the background."""
        outcome, self.faults = consume_outcome(self.faults)
        now = _now_iso()
        scenario = new_scenario(
            self.rng,
            execution_id=str(uuid.uuid4()),
            agent_id=call.agent_id,
            to_number=call.recipient_phone_number,
            from_number=call.from_phone_number,
            user_data=call.user_data,
            outcome=outcome,
            created_at=now,
        )
        record = CallRecord(
            execution_id=scenario.execution_id,
            agent_id=call.agent_id,
            recipient_phone_number=call.recipient_phone_number,
            from_phone_number=call.from_phone_number,
            user_data=call.user_data,
            outcome=outcome,
            received_at=now,
            received_monotonic=time.monotonic(),
            headers_traceparent=traceparent,
        )
        self.calls[record.execution_id] = record
        self.executions[record.execution_id] = execution_snapshot(
            scenario, "queued", updated_at=now
        )
        webhooks = self.faults.webhooks
        steps = plan_webhooks(
            outcome,
            duplicate=webhooks.duplicate,
            out_of_order=webhooks.out_of_order,
            malformed=webhooks.malformed,
        )
        # A fresh context: Bolna's webhooks are not part of the caller's trace, and the
        # simulator must not pass the API's trace context back to it.
        task = asyncio.get_running_loop().create_task(
            self._play_webhooks(record, scenario, steps),
            name=f"bolna-sim-webhooks-{record.execution_id}",
            context=contextvars.Context(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    async def _play_webhooks(
        self, record: CallRecord, scenario: CallScenario, steps: list[WebhookStep]
    ) -> None:
        try:
            for step in steps:
                await asyncio.sleep(self.faults.step_delay_ms / 1000)
                now = _now_iso()
                # The execution only moves forward, whatever order its webhooks go out in.
                if step.variant == "normal" and status_rank(step.status) > status_rank(
                    record.status
                ):
                    record.status = step.status
                    self.executions[record.execution_id] = execution_snapshot(
                        scenario, step.status, updated_at=now
                    )
                if await self._post_webhook(render_webhook(scenario, step, updated_at=now)):
                    record.webhooks_delivered += 1
                else:
                    record.webhooks_failed += 1
        finally:
            record.finished_at = _now_iso()

    async def _post_webhook(self, body: bytes) -> bool:
        """POST one webhook, retrying like Bolna on errors and non-2xx; True once delivered."""
        client = self._client()
        url = self.webhook_url
        for attempt in range(1, self.webhook_max_attempts + 1):
            try:
                response = await client.post(url, content=body, headers=_WEBHOOK_HEADERS)
            # The receiver may be down or broken (in-process it can raise anything): the
            # simulator keeps going either way.
            except Exception as exc:
                logger.info("webhook attempt %d failed: %r", attempt, exc)
            else:
                if response.is_success:
                    return True
                logger.info("webhook attempt %d answered %d", attempt, response.status_code)
            if attempt < self.webhook_max_attempts:
                await asyncio.sleep(self.webhook_backoff_s * 2 ** (attempt - 1))
        logger.warning("webhook given up after %d attempts", self.webhook_max_attempts)
        return False

    def _client(self) -> httpx.AsyncClient:
        if self._http_client is None:
            self._http_client = httpx.AsyncClient(timeout=5.0)
        return self._http_client

    async def wait_idle(self) -> None:
        """Wait until every call's webhooks were played (bound it with ``asyncio.timeout``)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _cancel_tasks(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reset(self) -> None:
        """Defaults back, in-flight webhooks cancelled, calls and executions forgotten."""
        await self._cancel_tasks()
        self.faults = self._default_faults
        self.rng = random.Random(self._seed)
        self.calls.clear()
        self.executions.clear()
        self.requests.clear()

    async def aclose(self) -> None:
        """Cancel in-flight webhooks and close the HTTP client the simulator created."""
        await self._cancel_tasks()
        if self._owns_http_client and self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None


def simulator_state(app: FastAPI) -> SimulatorState:
    """The state of an app made by :func:`create_simulator_app`."""
    state = app.state.sim
    if not isinstance(state, SimulatorState):
        raise TypeError("not a Bolna simulator app")
    return state


def create_simulator_app(
    *,
    public_base_url: str = "http://127.0.0.1:8000",
    webhook_token: str = "",
    api_key: str = "",
    step_delay_ms: int = 200,
    http_client: httpx.AsyncClient | None = None,
    seed: int | None = None,
    webhook_max_attempts: int = 4,
    webhook_backoff_ms: int = 50,
) -> FastAPI:
    """Build a fake Bolna API whose webhooks go to ``{public_base_url}/webhooks/bolna``.

    ``api_key`` empty accepts any caller. ``http_client`` (not closed by the simulator) sends
    the webhooks; without one the simulator makes its own. ``seed`` makes call details
    (duration, transcript...) reproducible. A webhook is tried ``webhook_max_attempts`` times,
    waiting ``webhook_backoff_ms`` and then doubling between attempts.
    """
    state = SimulatorState(
        public_base_url=public_base_url,
        webhook_token=webhook_token,
        api_key=api_key,
        step_delay_ms=step_delay_ms,
        http_client=http_client,
        seed=seed,
        webhook_max_attempts=webhook_max_attempts,
        webhook_backoff_ms=webhook_backoff_ms,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.aclose()

    # FastAPI traces itself once a global tracer provider exists; the simulator stands in
    # for a third party and must not add spans to the API's telemetry.
    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:  # FastAPI >= 0.16x
        options["telemetry"] = {"tracing": False}
    app = FastAPI(title="Bolna simulator", lifespan=lifespan, **options)
    app.state.sim = state

    @app.post("/call")
    async def place_call(request: Request) -> JSONResponse:
        """Queue an outbound call, then play its status webhooks in the background."""
        attempt = RequestRecord(
            received_at=_now_iso(),
            received_monotonic=time.monotonic(),
            headers_traceparent=request.headers.get("traceparent"),
        )
        state.requests.append(attempt)
        response = await _answer_call(state, request, attempt)
        attempt.status_code = response.status_code
        return response

    @app.get("/executions/{execution_id}")
    async def get_execution(execution_id: str, request: Request) -> JSONResponse:
        """The execution object, as the webhooks carry it."""
        if not state.authorized(request):
            return _error(401, "Access denied")
        execution = state.executions.get(execution_id)
        if execution is None:
            return _error(404, "Execution not found")
        return JSONResponse(execution)

    @app.get("/_sim/calls")
    async def list_calls() -> list[dict[str, Any]]:
        """Calls placed since the last reset, oldest first."""
        return [asdict(record) for record in state.calls.values()]

    @app.get("/_sim/requests")
    async def list_requests() -> list[dict[str, Any]]:
        """Every ``POST /call`` attempt since the last reset, faulted ones included."""
        return [asdict(record) for record in state.requests]

    @app.get("/_sim/faults")
    async def get_faults() -> FaultConfig:
        """The current fault configuration."""
        return state.faults

    @app.post("/_sim/faults")
    async def set_faults(update: FaultsUpdate) -> FaultConfig:
        """Change the given parts of the fault configuration; returns the result."""
        return state.update_faults(update)

    @app.post("/_sim/reset")
    async def reset() -> FaultConfig:
        """Restore the default faults and forget every call."""
        await state.reset()
        return state.faults

    return app


async def _answer_call(
    state: SimulatorState, request: Request, attempt: RequestRecord
) -> JSONResponse:
    latency_ms = state.faults.latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)
    if not state.authorized(request):
        return _error(401, "Access denied")
    fault = state.take_call_fault()
    attempt.fault_mode = fault.mode
    if fault.mode == "timeout":
        await _hold(request, fault.timeout_s)
        return _error(504, "Gateway timeout")
    if fault.mode != "ok":
        status_code, message = _FAULT_STATUS[fault.mode]
        headers = None
        if fault.retry_after is not None and status_code in (429, 503):
            headers = {"Retry-After": str(fault.retry_after)}
        return _error(status_code, message, headers)
    try:
        payload: object = await request.json()
    except ValueError:
        return _error(400, "Malformed request body: expected a JSON object")
    call = _parse_call(payload)
    if isinstance(call, str):
        return _error(422, call)
    record = state.start_call(call, traceparent=attempt.headers_traceparent)
    attempt.execution_id = record.execution_id
    return JSONResponse(
        {"message": "done", "status": "queued", "execution_id": record.execution_id}
    )


async def _hold(request: Request, seconds: float) -> None:
    """Sleep ``seconds``, or less if the client hangs up (so uvicorn is not kept busy)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(remaining, 0.05))


def _parse_call(payload: object) -> _CallRequest | str:
    """The call request, or the 422 message explaining why Bolna would refuse it."""
    if not isinstance(payload, dict):
        return "Request body must be a JSON object"
    agent_id = payload.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        return "agent_id is required"
    recipient = payload.get("recipient_phone_number")
    if not isinstance(recipient, str) or not recipient:
        return "recipient_phone_number is required"
    if not E164.fullmatch(recipient):
        return f"recipient_phone_number {recipient!r} is not a valid E.164 number (+919876543210)"
    from_number = payload.get("from_phone_number") or DEFAULT_FROM_NUMBER
    if not isinstance(from_number, str) or not E164.fullmatch(from_number):
        return f"from_phone_number {from_number!r} is not a valid E.164 number"
    user_data = payload.get("user_data") or {}
    if not isinstance(user_data, dict):
        return "user_data must be an object"
    return _CallRequest(
        agent_id=agent_id,
        recipient_phone_number=recipient,
        from_phone_number=from_number,
        user_data=user_data,
    )
