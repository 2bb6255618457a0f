"""The plan's success metric, measured in-process: every fault of ``tests.faults`` driven
through the real API and the simulator, with the production error policy and the real
Sentry backend writing into a capturing transport.

Each critical failure yields exactly the events its case lists (feature tag, level, error
type), each linked to the span where the policy decided it, in the trace of the request
or worker step that caused it; expected errors and 4xx yield none; every 5xx answer has a
decision in its trace; no event carries a phone number, a token, the Bolna API key or a
password. A storm of ten times the monthly budget stays inside the budget's tiers while
every fatal event passes.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import telemetry
from app.bolna.client import BolnaClient
from app.config import Settings
from telemetry import attributes as attrs
from telemetry.budget import TIER_LIMITS
from telemetry.error_policy import SPAN_EVENT_NAME
from telemetry.otel_setup import current
from telemetry.testing import (
    FAKE_SENTRY_DSN,
    CapturingSentryTransport,
    capture_spans,
    settings_for_tests,
)
from tests.conftest import API_BASE, create_user_token, make_settings, running_stack
from tests.faults import (
    CASES,
    PASSWORD,
    FaultCase,
    FaultContext,
    InjectedFault,
    check_events,
    summarize,
)

MATRIX_TELEMETRY = settings_for_tests(
    app_env="production",
    error_backend="sentry",
    sentry_dsn=FAKE_SENTRY_DSN,
    traces_exporter="none",  # spans go to the in-memory exporter only
)
LEAKS = re.compile(
    r"9876543210|eyJ[\w-]{8,}|Bearer\s+\w|test-bolna-key|test-webhook-token|password123|"
    + re.escape(PASSWORD)
)


@pytest.fixture(autouse=True)
def _no_leftover_telemetry() -> Iterator[None]:
    """``capture_spans`` refuses to start over a live configuration another test left."""
    leftover = current()
    if leftover is not None:
        leftover.shutdown(timeout_s=1.0)
    yield


@dataclass(frozen=True)
class Users:
    database: Path  # migrated, with both users; each test works on a copy
    token: str
    broke_token: str


@pytest.fixture(scope="module")
def users(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Users:
    """Both users made once (password hashing is slow), copied into each test's database."""
    path = tmp_path_factory.mktemp("matrix") / "users.db"
    shutil.copyfile(sqlite_template, path)
    settings = make_settings(f"sqlite+aiosqlite:///{path}")

    async def create() -> Users:
        token = await create_user_token(settings, "rich@example.com", 1000)
        broke_token = await create_user_token(settings, "broke@example.com", 0)
        return Users(path, token, broke_token)

    return asyncio.run(create())


@dataclass
class Outcome:
    ctx: FaultContext
    events: list[dict[str, Any]]
    spans: list[ReadableSpan]


@pytest.fixture
def matrix_db(users: Users, tmp_path: Path) -> str:
    """A copy of the users' database, for one test."""
    path = tmp_path / "app.db"
    shutil.copyfile(users.database, path)
    return f"sqlite+aiosqlite:///{path}"


async def drive(
    case: FaultCase, users: Users, matrix_db: str, monkeypatch: pytest.MonkeyPatch
) -> Outcome:
    settings = make_settings(**{"database_url": matrix_db, **case.settings})
    transport = CapturingSentryTransport()
    # Configured first: the app's own configure() then returns this one.
    with capture_spans(MATRIX_TELEMETRY, sentry_transport=transport) as capture:
        async with running_stack(settings) as stack, bolna_on_a_socket(stack.app, case, settings):
            api = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=stack.app, raise_app_exceptions=False),
                base_url=API_BASE,
            )
            ctx = FaultContext(
                api=api,
                sim=stack.sim,
                token=users.token,
                broke_token=users.broke_token,
                webhook_token=settings.bolna_webhook_token,
                app=stack.app,
                patch=monkeypatch.setattr,
            )
            async with api:
                await case.run(ctx)
            return Outcome(ctx, transport.events, capture.spans())


@asynccontextmanager
async def bolna_on_a_socket(
    app: FastAPI, case: FaultCase, settings: Settings
) -> AsyncIterator[None]:
    """The stack routes Bolna in-process; a ``bolna_api_url`` override only means something
    to a client on the real network, so such a case gets one."""
    if "bolna_api_url" not in case.settings:
        yield
        return
    async with httpx.AsyncClient() as http:
        routed_in_process = app.state.bolna
        app.state.bolna = BolnaClient(http, settings)
        try:
            yield
        finally:
            app.state.bolna = routed_in_process


def _local_root(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> ReadableSpan:
    """The span that began ``span``'s trace in this service (its parent is remote or none)."""
    while span.parent is not None and not span.parent.is_remote and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
    return span


def _sent_decisions(span: ReadableSpan) -> list[dict[str, Any]]:
    return [
        dict(event.attributes or {})
        for event in span.events
        if event.name == SPAN_EVENT_NAME
        and (event.attributes or {}).get(attrs.DECISION_OUTCOME) == "sent"
    ]


def assert_events_link_to_their_decisions(case: FaultCase, outcome: Outcome) -> None:
    """Each event names the span where it was decided, in the trace the case expects."""
    by_id = {span.context.span_id: span for span in outcome.spans}
    for event in outcome.events:
        summary = summarize(event)
        [expected] = [x for x in case.expect if x.matches(summary)]
        if expected.trace is None:
            continue
        assert summary.span_id is not None, summary
        span = by_id.get(int(summary.span_id, 16))
        assert span is not None, f"the event's span was not recorded: {summary}"
        assert f"{span.context.trace_id:032x}" == summary.trace_id
        assert [d for d in _sent_decisions(span) if d.get(attrs.FEATURE) == summary.feature], (
            f"no 'sent' decision for {summary.feature} on {span.name}"
        )
        root = _local_root(span, by_id)
        assert root.name == expected.trace, f"{summary} is in the trace of {root.name!r}"


def assert_every_5xx_was_decided(outcome: Outcome) -> None:
    """A request the driver made that failed on our side has a decision in its trace
    (sent, or dropped and still visible there)."""
    for trace_id in outcome.ctx.triggered.trace_ids:
        in_trace = [s for s in outcome.spans if f"{s.context.trace_id:032x}" == trace_id]
        servers = [s for s in in_trace if s.kind == SpanKind.SERVER]
        assert len(servers) == 1, [s.name for s in in_trace]
        status = (servers[0].attributes or {}).get(attrs.HTTP_RESPONSE_STATUS_CODE)
        if isinstance(status, int) and status >= 500:
            decisions = [e for s in in_trace for e in s.events if e.name == SPAN_EVENT_NAME]
            assert decisions, f"{servers[0].name} answered {status} and nothing was decided"


def assert_no_pii(events: list[dict[str, Any]]) -> None:
    for event in events:
        text = json.dumps(event)
        leak = LEAKS.search(text)
        assert leak is None, f"{leak[0]!r} leaked into {text}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_fault(
    case: FaultCase, users: Users, matrix_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.skip:
        pytest.skip(case.skip)
    outcome = await drive(case, users, matrix_db, monkeypatch)

    assert set(outcome.ctx.triggered.statuses) == {case.response_status}
    problems = check_events(case, [summarize(e) for e in outcome.events], outcome.ctx.triggered)
    assert not problems, "\n".join(problems)
    assert_events_link_to_their_decisions(case, outcome)
    assert_every_5xx_was_decided(outcome)
    assert_no_pii(outcome.events)


def test_the_matrix_covers_the_plan() -> None:
    """Every critical area of the plan has a case that must send something."""
    features = {expected.feature for case in CASES for expected in case.expect}
    critical = {"call_initiation", "campaign_call", "webhook", "credits", "database", "http"}
    assert critical | {"auth"} <= features
    assert [case.name for case in CASES if not case.expect], "no expected-error cases"


# --- the budget under a storm ------------------------------------------------------------

MONTHLY = 50
STORM = 10 * MONTHLY
STORM_LEVELS = ("error", "warning", "info")


def storm_level(i: int) -> str:
    return "fatal" if i % 50 == 49 else STORM_LEVELS[i % len(STORM_LEVELS)]


@pytest.fixture
async def storm_telemetry() -> AsyncIterator[CapturingSentryTransport]:
    transport = CapturingSentryTransport()
    settings = MATRIX_TELEMETRY.model_copy(update={"error_budget_monthly": MONTHLY})
    with capture_spans(settings, sentry_transport=transport):
        yield transport


async def test_a_storm_of_ten_times_the_budget_keeps_to_its_tiers_and_sends_every_fatal(
    storm_telemetry: CapturingSentryTransport,
) -> None:
    sent_by_level: Counter[str] = Counter()
    for i in range(STORM):
        level = storm_level(i)
        used = sum(sent_by_level.values())
        share = TIER_LIMITS[level]
        allowed = share is None or used < int(share * MONTHLY)
        decision = telemetry.capture_error(
            InjectedFault(f"storm {i}"),
            feature="storm",
            level=level,
            endpoint=f"/storm/{i}",  # a fingerprint of its own: nothing is deduplicated
            http_status=500,
        )
        assert (decision.outcome == "sent") == allowed, (i, level, used, decision)
        if allowed:
            sent_by_level[level] += 1

    events = storm_telemetry.events
    assert Counter(event["level"] for event in events) == sent_by_level
    fatal_tried = sum(1 for i in range(STORM) if storm_level(i) == "fatal")
    assert sent_by_level["fatal"] == fatal_tried
    assert sum(n for level, n in sent_by_level.items() if level != "fatal") <= 0.9 * MONTHLY
    status = telemetry.status()
    assert status["budget"]["used"] == len(events)
    assert set(status["dropped"]) == {"budget_error", "budget_warning", "budget_info"}
    assert sum(status["dropped"].values()) == STORM - len(events)
