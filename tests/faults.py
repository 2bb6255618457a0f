"""The fault-injection matrix: each way the service can fail, how to make it fail through
the real API and the Bolna simulator, and what the error policy must send for it.

    from tests.faults import CASES_BY_NAME, FaultContext, check_events, summarize

    case = CASES_BY_NAME["bolna_500"]
    settings = make_settings(**{"database_url": url, **case.settings})
    ctx = FaultContext(api=api, sim=sim, token=token, broke_token=broke_token,
                       webhook_token=settings.bolna_webhook_token)
    await case.run(ctx)                    # sets the fault, triggers it, puts it back
    assert set(ctx.triggered.statuses) == {case.response_status}
    problems = check_events(case, [summarize(e) for e in sentry_events], ctx.triggered)
    assert not problems, problems

Two runners share it: ``tests/test_error_matrix.py`` (in-process, a capturing Sentry
transport, spans in memory) and the Bugsink end-to-end test (the API served on loopback,
a real Sentry-protocol server). What a runner must know about a case:

- ``in_process``: the driver needs ``ctx.app`` and ``ctx.patch`` (``monkeypatch.setattr``)
  to mount a route or make a function fail, so the app must run in the runner's process.
- ``settings``: ``Settings`` overrides the case needs (a closed port as ``bolna_api_url``,
  a database that cannot be opened, ...). A URL override needs a Bolna client on a real
  socket, which an in-process stack routing Bolna through ASGI does not have.
- ``needs_own_app``: the case needs an API process of its own (different settings, or
  fresh auth-signal state for the bad-token flood).
- ``skip``: why the case cannot run yet (None when it can).

Every case assumes the tests' settings (``make_settings``: a Bolna read timeout well under
the simulator's 30 s hold, retries without backoff, a fast webhook retry worker), a fresh
error policy (dedupe memory from an earlier case would merge its events into this one's),
and two users: ``token`` with credits and ``broke_token`` with none. Drivers put back the
faults they set, and return once everything they caused has been handled.

Expectations read the Sentry event JSON (``summarize``): the ``feature`` and
``error_type`` tags, ``level``, the message and ``contexts.trace``. Each request a driver
makes on purpose carries a ``traceparent`` it generated, so "the event is in that
request's trace" is checkable without spans (``Expected.driver_trace``);
``Expected.trace`` names the span that began the event's trace in the service, for
runners that have the spans.
"""

from __future__ import annotations

import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import httpx
import jwt
from fastapi import APIRouter, FastAPI
from sqlalchemy import select

import app.credits.service as credits_service
import app.webhooks.service as webhooks_service
from app.calls.service import notify_call_final
from app.models import WebhookDelivery
from telemetry import _auth_signals
from telemetry._auth_signals import ALL_FAILING_MESSAGE, BURST_MESSAGE, FORGED_MESSAGE
from tests.conftest import Stack
from tests.helpers import eventually, make_agent, wait_for_call, wait_sim_idle

PHONE: Final = "+919876543210"
PASSWORD: Final = "Matrix-passw0rd-never-sent"
BOOM_PATH: Final = "/_faults/boom"
# A JWT-looking string inside an exception message: the scrubber must redact it.
JWT_IN_MESSAGE: Final = (
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXRoYXQtbXVzdC1nbw"
)
FLOOD_SIZE: Final = 300  # a third each: malformed, forged signature, foreign algorithm

Patch = Callable[[object, str, object], None]


def _closed_loopback_url() -> str:
    """A URL on a loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


UNREACHABLE_BOLNA_URL: Final = _closed_loopback_url()
MISSING_DATABASE_URL: Final = f"sqlite+aiosqlite:////nonexistent-{uuid.uuid4().hex}/app.db"


class InjectedFault(RuntimeError):
    """A failure the matrix plants inside the service."""


# --- what a driver gets and records -----------------------------------------------------


@dataclass
class Triggered:
    """The requests a driver made on purpose: their statuses and the traces it started."""

    statuses: list[int] = field(default_factory=list)
    trace_ids: set[str] = field(default_factory=set)


@dataclass
class FaultContext:
    """What a driver works with. ``api`` must answer a crash with a 500 rather than raise
    (``httpx.ASGITransport(app, raise_app_exceptions=False)`` in-process).

    It has what the helpers in ``tests.helpers`` use of a ``Stack`` (``api``, ``sim``,
    ``auth``), so they take it too (``ctx.as_stack()``).
    """

    api: httpx.AsyncClient
    sim: httpx.AsyncClient
    token: str
    broke_token: str
    webhook_token: str
    app: FastAPI | None = None
    patch: Patch | None = None
    triggered: Triggered = field(default_factory=Triggered)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def trigger(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Make the request that should cause the failure, in a trace of our own."""
        trace_id = secrets.token_hex(16)
        sent = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", **(headers or {})}
        if token is not None:
            sent.update(self.auth(token))
        response = await self.api.request(method, url, headers=sent, **kwargs)
        self.triggered.statuses.append(response.status_code)
        self.triggered.trace_ids.add(trace_id)
        return response

    async def faults(self, **body: Any) -> None:
        """``POST /_sim/faults`` (see ``app.simulator.server``)."""
        response = await self.sim.post("/_sim/faults", json=body)
        response.raise_for_status()

    def as_stack(self) -> Stack:
        return cast(Stack, self)

    def in_process(self) -> tuple[FastAPI, Patch]:
        if self.app is None or self.patch is None:
            raise RuntimeError("this case needs the app in-process (ctx.app and ctx.patch)")
        return self.app, self.patch


# --- what must be sent ------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """``count`` events of one kind that a case must produce."""

    feature: str
    level: str
    error_type: str | None = None  # the exception class (tag `error_type`); None: a message
    message: str | None = None  # a message event's text
    # The span that began the event's trace in the service; None: not asserted.
    trace: str | None = None
    driver_trace: bool = False  # ... continuing a trace the driver started (its traceparent)
    tags: Mapping[str, str] = field(default_factory=dict)
    count: int = 1

    def matches(self, event: EventSummary) -> bool:
        return (
            event.feature == self.feature
            and event.level == self.level
            and (self.error_type is None or event.error_type == self.error_type)
            and (self.message is None or event.message == self.message)
            and all(event.tags.get(k) == v for k, v in self.tags.items())
        )


@dataclass(frozen=True)
class EventSummary:
    """The parts of a Sentry event the matrix checks."""

    feature: str | None
    level: str | None
    error_type: str | None
    message: str | None
    trace_id: str | None
    span_id: str | None
    tags: Mapping[str, str]


def _tags(event: Mapping[str, Any]) -> dict[str, str]:
    raw = event.get("tags") or {}
    pairs = raw.items() if isinstance(raw, Mapping) else raw  # the protocol allows both
    return {str(key): str(value) for key, value in pairs}


def _message(event: Mapping[str, Any]) -> str | None:
    logentry = event.get("logentry")
    if isinstance(logentry, Mapping):
        text = logentry.get("formatted") or logentry.get("message")
        if isinstance(text, str):
            return text
    message = event.get("message")
    if isinstance(message, Mapping):  # the interface form
        message = message.get("formatted") or message.get("message")
    return message if isinstance(message, str) else None


def summarize(event: Mapping[str, Any]) -> EventSummary:
    """Read a Sentry event (as sent, or as a Sentry-protocol server stores it)."""
    tags = _tags(event)
    contexts = event.get("contexts") or {}
    trace = contexts.get("trace") or {}
    return EventSummary(
        feature=tags.get("feature"),
        level=event.get("level"),
        error_type=tags.get("error_type"),
        message=_message(event),
        trace_id=trace.get("trace_id"),
        span_id=trace.get("span_id"),
        tags=tags,
    )


def check_events(case: FaultCase, events: list[EventSummary], triggered: Triggered) -> list[str]:
    """What is wrong with ``events`` for ``case``; empty when they are exactly as expected.

    Every event must match one expectation, every expectation's count must hold, and an
    event expected in the driver's trace must carry one of the trace ids it sent.
    """
    problems: list[str] = []
    claimed: set[int] = set()
    for expected in case.expect:
        mine = [i for i, e in enumerate(events) if i not in claimed and expected.matches(e)]
        claimed.update(mine)
        if len(mine) != expected.count:
            problems.append(f"expected {expected.count} x {expected}, got {len(mine)}")
        if expected.driver_trace:
            problems.extend(
                f"event not in the triggering request's trace: {events[i]}"
                for i in mine
                if events[i].trace_id not in triggered.trace_ids
            )
    problems.extend(
        f"unexpected event: {events[i]}" for i in range(len(events)) if i not in claimed
    )
    return problems


# --- the cases --------------------------------------------------------------------------

Driver = Callable[[FaultContext], Awaitable[None]]


@dataclass(frozen=True)
class FaultCase:
    name: str
    what: str  # the failure, in one line
    run: Driver
    expect: tuple[Expected, ...]  # empty: nothing may be sent
    response_status: int  # what every request the driver triggered got
    in_process: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    own_app: bool = False
    skip: str | None = None

    @property
    def needs_own_app(self) -> bool:
        return self.own_app or bool(self.settings)


async def _place_call(ctx: FaultContext, *, token: str | None = None) -> httpx.Response:
    token = token or ctx.token
    agent_id = await make_agent(ctx.as_stack(), token)
    return await ctx.trigger(
        "POST", "/calls", token=token, json={"agent_id": agent_id, "phone_number": PHONE}
    )


async def _place_call_and_wait(ctx: FaultContext) -> int:
    """Place a call that completes, and wait until every webhook of it was handled."""
    response = await _place_call(ctx)
    assert response.status_code == 201, response.text
    call_id = int(response.json()["id"])
    await wait_for_call(ctx.as_stack(), ctx.token, call_id)
    await wait_sim_idle(ctx.as_stack())
    return call_id


def _bolna_fault(mode: str) -> Driver:
    async def run(ctx: FaultContext) -> None:
        await ctx.faults(call={"mode": mode})
        try:
            await _place_call(ctx)
        finally:
            await ctx.faults(call={"mode": "ok"})

    return run


async def _unreachable(ctx: FaultContext) -> None:
    await _place_call(ctx)  # Settings.bolna_api_url is a closed port


async def _database_unavailable(ctx: FaultContext) -> None:
    await ctx.trigger(
        "POST", "/auth/login", json={"email": "someone@example.com", "password": PASSWORD}
    )


async def _webhook_without_execution_id(ctx: FaultContext) -> None:
    # First a body that is not JSON (400, nothing to report: not attributable to Bolna),
    # then valid JSON without an id (400, reported once however often Bolna retries it).
    await ctx.faults(webhooks={"malformed": True})
    try:
        await _place_call_and_wait(ctx)
    finally:
        await ctx.faults(webhooks={"malformed": False})


class _FailingCalls:
    """Wraps ``original``: the first ``times`` calls accepted by ``when`` raise (None: all)."""

    def __init__(
        self,
        original: Callable[..., Awaitable[Any]],
        *,
        times: int | None = 1,
        when: Callable[..., bool] = lambda *args, **kwargs: True,
    ) -> None:
        self.original = original
        self.left = times
        self.when = when

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.when(*args, **kwargs) and (self.left is None or self.left > 0):
            if self.left is not None:
                self.left -= 1
            raise InjectedFault(f"planted failure while handling a call to {PHONE}")
        return await self.original(*args, **kwargs)


async def _webhook_processing_crash(ctx: FaultContext) -> None:
    # The final-status listeners run inside webhook processing: the first one fails once,
    # the delivery is kept and the retry worker applies it.
    _, patch = ctx.in_process()
    failing = _FailingCalls(notify_call_final, times=1)
    patch(webhooks_service, "notify_call_final", failing)
    await _place_call_and_wait(ctx)


async def _webhook_retries_exhausted(ctx: FaultContext) -> None:
    app, patch = ctx.in_process()
    patch(
        webhooks_service,
        "notify_call_final",
        _FailingCalls(notify_call_final, times=None),
    )
    response = await _place_call(ctx)
    assert response.status_code == 201, response.text
    await wait_sim_idle(ctx.as_stack())
    sessionmaker = app.state.sessionmaker

    async def given_up() -> list[str]:
        async with sessionmaker() as session:
            states = await session.scalars(select(WebhookDelivery.state))
            return list(states)

    await eventually(given_up, lambda states: "given_up" in states)


async def _credit_deduction_failure(ctx: FaultContext) -> None:
    # The deduction of the completed call fails once (fatal); the retry charges it.
    _, patch = ctx.in_process()
    failing = _FailingCalls(
        credits_service._apply, times=1, when=lambda *a, **kw: kw.get("reason") == "call"
    )
    patch(credits_service, "_apply", failing)
    call_id = await _place_call_and_wait(ctx)
    call = await ctx.api.get(f"/calls/{call_id}", headers=ctx.auth(ctx.token))
    assert call.json()["credits_charged"] > 0, call.text


async def _unhandled_endpoint_exception(ctx: FaultContext) -> None:
    app, _ = ctx.in_process()
    if not any(getattr(route, "path", None) == BOOM_PATH for route in app.routes):
        router = APIRouter()

        @router.get(BOOM_PATH)
        async def boom() -> None:
            raise InjectedFault(f"exploded calling {PHONE} with token {JWT_IN_MESSAGE}")

        app.include_router(router)
    await ctx.trigger("GET", BOOM_PATH)


def _flood_tokens() -> list[str]:
    now = int(time.time())
    tokens: list[str] = []
    for i in range(FLOOD_SIZE // 3):
        claims = {"sub": str(i), "exp": now + 3600}
        tokens.append(f"not-a-jwt.{i}")
        tokens.append(jwt.encode(claims, f"forged-secret-{i}-padded-to-32-characters!!"))
        tokens.append(jwt.encode(claims, "x" * 64, algorithm="HS512"))
    return tokens


async def _bad_token_flood(ctx: FaultContext) -> None:
    if ctx.patch is not None:  # in-process: other tests' auth failures must not count
        ctx.patch(_auth_signals, "_signals", _auth_signals.AuthSignals())
    for token in _flood_tokens():
        await ctx.trigger("GET", "/calls", token=token)


def _request(method: str, url: str, **request: Any) -> Driver:
    async def run(ctx: FaultContext) -> None:
        await ctx.trigger(method, url, **request)

    return run


async def _unknown_agent(ctx: FaultContext) -> None:
    await ctx.trigger(
        "POST", "/calls", token=ctx.token, json={"agent_id": 987654, "phone_number": PHONE}
    )


async def _bad_phone(ctx: FaultContext) -> None:
    agent_id = await make_agent(ctx.as_stack(), ctx.token)
    await ctx.trigger(
        "POST", "/calls", token=ctx.token, json={"agent_id": agent_id, "phone_number": "98765"}
    )


async def _insufficient_credits(ctx: FaultContext) -> None:
    await _place_call(ctx, token=ctx.broke_token)


async def _bolna_rejected(ctx: FaultContext) -> None:
    await _place_call(ctx)  # Settings.bolna_from_phone_number is not E.164: Bolna says 422


async def _webhook_not_json(ctx: FaultContext) -> None:
    await ctx.trigger(
        "POST",
        "/webhooks/bolna",
        params={"token": ctx.webhook_token},
        content=b'{"id": "cut short',
        headers={"content-type": "application/json"},
    )


async def _campaign_dispatch_failure(ctx: FaultContext) -> None:
    if ctx.app is not None and not any(
        str(getattr(route, "path", "")).startswith("/campaigns") for route in ctx.app.routes
    ):
        from tests.campaigns.conftest import ensure_campaigns  # until create_app wires them

        ensure_campaigns(ctx.app)
    agent_id = await make_agent(ctx.as_stack(), ctx.token)
    created = await ctx.api.post(
        "/campaigns",
        json={
            "name": "Fault matrix",
            "agent_id": agent_id,
            "contacts": [{"name": "Asha", "phone_number": PHONE}],
            "retry": {"max_attempts": 1},
        },
        headers=ctx.auth(ctx.token),
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    await ctx.faults(call={"mode": "500"})
    try:
        await ctx.trigger("POST", f"/campaigns/{campaign_id}/start", token=ctx.token)

        async def progress() -> dict[str, Any]:
            response = await ctx.api.get(f"/campaigns/{campaign_id}", headers=ctx.auth(ctx.token))
            body: dict[str, Any] = response.json()
            return body

        await eventually(progress, lambda body: body["progress"]["failed"] == 1)
    finally:
        await ctx.faults(call={"mode": "ok"})


def _campaigns_skip_reason() -> str | None:
    try:
        import app.campaigns.wiring  # noqa: F401
    except ImportError:
        return "app.campaigns is not there yet"
    return None


def _in_call_trace(
    feature: str, level: str, error_type: str, *, tags: Mapping[str, str] | None = None
) -> Expected:
    """One event decided inside the driver's ``POST /calls``."""
    return Expected(
        feature,
        level,
        error_type,
        trace="POST /calls",
        driver_trace=True,
        tags=tags or {"call_source": "direct"},
    )


def _in_webhook_trace(feature: str, level: str, error_type: str) -> Expected:
    """One event decided while handling a webhook the simulator sent (its own trace)."""
    return Expected(feature, level, error_type, trace="POST /webhooks/bolna")


def _auth_signal(level: str, message: str) -> Expected:
    return Expected("auth", level, message=message, trace="GET /calls", driver_trace=True)


def _bolna_fault_case(mode: str, error_type: str, response: int, level: str = "error") -> FaultCase:
    return FaultCase(
        name=f"bolna_{mode}",
        what=f"Bolna answers every POST /call with {mode}",
        run=_bolna_fault(mode),
        expect=(
            _in_call_trace(
                "call_initiation",
                level,
                error_type,
                tags={"call_source": "direct", "bolna_endpoint": "/call"},
            ),
        ),
        response_status=response,
    )


def _no_event(name: str, what: str, run: Driver, response: int, **options: Any) -> FaultCase:
    return FaultCase(name, what, run, expect=(), response_status=response, **options)


CASES: Final[tuple[FaultCase, ...]] = (
    # --- critical failures: the events each must send -----------------------------------
    _bolna_fault_case("500", "BolnaServerError", 502),
    _bolna_fault_case("503", "BolnaServerError", 502),
    _bolna_fault_case("429", "BolnaRateLimited", 503, level="warning"),
    _bolna_fault_case("401", "BolnaUnauthorized", 502),
    _bolna_fault_case("timeout", "BolnaTimeout", 504),
    FaultCase(
        "bolna_unreachable",
        "Nothing listens at BOLNA_API_URL",
        _unreachable,
        expect=(_in_call_trace("call_initiation", "error", "BolnaUnreachable"),),
        response_status=503,
        settings={"bolna_api_url": UNREACHABLE_BOLNA_URL},
    ),
    FaultCase(
        "database_unavailable",
        "The database cannot be opened: login answers 503",
        _database_unavailable,
        # One event for the outage, whoever meets it first: usually the webhook retry loop
        # at start-up (a step outside any trace), so the trace is not asserted; the login's
        # own decision (a duplicate) is on its span.
        expect=(Expected("database", "error", "OperationalError", trace=None),),
        response_status=503,
        settings={"database_url": MISSING_DATABASE_URL},
    ),
    FaultCase(
        "webhook_without_execution_id",
        "Bolna posts valid JSON naming no execution (after a body that is not JSON)",
        _webhook_without_execution_id,
        expect=(_in_webhook_trace("webhook", "error", "WebhookWithoutExecutionId"),),
        response_status=201,
    ),
    FaultCase(
        "webhook_processing_crash",
        "Applying the completed webhook raises once; the retry worker applies it",
        _webhook_processing_crash,
        expect=(_in_webhook_trace("webhook", "error", "InjectedFault"),),
        response_status=201,
        in_process=True,
    ),
    FaultCase(
        "webhook_retries_exhausted",
        "Applying the completed webhook always raises: retried, then given up",
        _webhook_retries_exhausted,
        expect=(
            _in_webhook_trace("webhook", "error", "InjectedFault"),  # repeats: duplicates
            Expected("webhook", "error", "WebhookRetriesExhausted", trace="webhook.retry"),
        ),
        response_status=201,
        in_process=True,
        settings={"webhook_retry_max_attempts": 2},
    ),
    FaultCase(
        "credit_deduction_failure",
        "Deducting a completed call's credits fails once (money: fatal); the retry charges",
        _credit_deduction_failure,
        expect=(_in_webhook_trace("credits", "fatal", "InjectedFault"),),
        response_status=201,
        in_process=True,
    ),
    FaultCase(
        "campaign_dispatch_failure",
        "Bolna answers 500 to a campaign's dial",
        _campaign_dispatch_failure,
        expect=(
            Expected(
                "campaign_call",
                "error",
                "BolnaServerError",
                trace="campaign.dispatch",  # each dial is a trace of its own
                tags={"call_source": "campaign", "bolna_endpoint": "/call"},
            ),
        ),
        response_status=200,
        skip=_campaigns_skip_reason(),
    ),
    FaultCase(
        "unhandled_endpoint_exception",
        "An endpoint raises a RuntimeError: 500",
        _unhandled_endpoint_exception,
        expect=(
            Expected("http", "error", "InjectedFault", trace=f"GET {BOOM_PATH}", driver_trace=True),
        ),
        response_status=500,
        in_process=True,
    ),
    FaultCase(
        "bad_token_flood",
        f"{FLOOD_SIZE} requests with bad tokens (malformed, forged, foreign algorithm)",
        _bad_token_flood,
        expect=(
            _auth_signal("warning", BURST_MESSAGE),
            _auth_signal("warning", FORGED_MESSAGE),
            _auth_signal("error", ALL_FAILING_MESSAGE),
        ),
        response_status=401,
        own_app=True,  # fresh auth signals: no token seen in the last hour
    ),
    # --- expected errors and 4xx: nothing may be sent -----------------------------------
    _no_event(
        "unknown_agent", "POST /calls with an agent that does not exist", _unknown_agent, 404
    ),
    _no_event("bad_phone", "POST /calls to a number that is not E.164", _bad_phone, 422),
    _no_event(
        "insufficient_credits", "POST /calls with a zero balance", _insufficient_credits, 402
    ),
    _no_event(
        "bolna_rejected",
        "Bolna refuses the call with 422 (our from-number is not E.164)",
        _bolna_rejected,
        422,
        settings={"bolna_from_phone_number": "12345"},
    ),
    _no_event("missing_token", "GET /calls without a token", _request("GET", "/calls"), 401),
    _no_event("unknown_route", "GET a path that does not exist", _request("GET", "/nope"), 404),
    _no_event(
        "webhook_bad_token",
        "A webhook with the wrong token",
        _request("POST", "/webhooks/bolna", params={"token": "wrong"}, json={"id": "x"}),
        401,
    ),
    _no_event("webhook_not_json", "A webhook body that is not JSON", _webhook_not_json, 400),
)

CASES_BY_NAME: Final = {case.name: case for case in CASES}
