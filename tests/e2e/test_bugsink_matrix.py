"""The fault-injection matrix (``tests.faults``) against a real Sentry-protocol server.

The API runs as `python -m app serve` in production mode with `TELEMETRY_ERROR_BACKEND=
sentry` and Bugsink's DSN, spans going to an OTLP receiver; the simulator runs as `python -m
app simulator`. Every case that can be driven over the network runs (those marked
``in_process`` are covered by ``tests/test_error_matrix.py`` only): cases with settings of
their own or ``own_app`` each get fresh processes, the others share one. Then Bugsink's REST
API is read back, each event assigned to the case during whose run it was captured, and:

- each critical failure arrived exactly once, with its feature tag, level and error type,
  in the trace of the request that caused it (the driver's ``traceparent``), decided on a
  span whose trace began where the case says;
- expected errors and 4xx sent nothing, and nothing arrived outside the cases;
- no stored event contains a phone number, a JWT, the Bolna API key or a password.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import traceback
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from telemetry import attributes as attrs
from telemetry.error_policy import SPAN_EVENT_NAME
from tests.e2e.bugsink import BugsinkClient, Event
from tests.e2e.loopback import Loopback, Users, loopback_servers
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.faults import (
    CASES,
    PASSWORD,
    FaultCase,
    FaultContext,
    Triggered,
    check_events,
    summarize,
)

pytestmark = [pytest.mark.e2e, pytest.mark.bugsink]

LOOPBACK_CASES = [case for case in CASES if not case.in_process]
IN_PROCESS_ONLY = "needs the app in the test's process: see tests/test_error_matrix.py"
JWT_PATTERN = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}")
USER_PASSWORD = "password123"  # what tests.conftest.create_user_token sets


@dataclass
class CaseRun:
    """One case as it ran: what its requests got and when (events captured meanwhile are its)."""

    case: FaultCase
    triggered: Triggered = field(default_factory=Triggered)
    started: float = 0.0
    finished: float = 0.0
    error: str | None = None  # the driver failed: the traceback
    skipped: str | None = None
    events: list[Event] = field(default_factory=list)


@dataclass
class MatrixRun:
    runs: dict[str, CaseRun]
    events: list[Event]  # every event the project received
    stray: list[Event]  # ... of which no case's run captured
    spans: list[ReceivedSpan]
    secrets: dict[str, str]  # what must never be stored: description -> value


def captured_at(event: Event) -> float:
    """When the SDK captured the event (the app's clock, which is the test's)."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def _served_paths(servers: Loopback) -> set[str]:
    return set(httpx.get(f"{servers.api}/openapi.json", timeout=5).json()["paths"])


async def _drive(case: FaultCase, servers: Loopback, triggered: Triggered) -> None:
    async with (
        httpx.AsyncClient(base_url=servers.api, timeout=15) as api,
        httpx.AsyncClient(base_url=servers.sim, timeout=5) as sim,
    ):
        ctx = FaultContext(
            api=api,
            sim=sim,
            token=servers.users.token,
            broke_token=servers.users.broke_token,
            webhook_token=servers.settings.bolna_webhook_token,
            triggered=triggered,
        )
        await case.run(ctx)


def _run_cases(servers: Loopback, runs: list[CaseRun]) -> None:
    campaigns_served = any(p.startswith("/campaigns") for p in _served_paths(servers))
    for run in runs:
        if run.case.name == "campaign_dispatch_failure" and not campaigns_served:
            run.skipped = "the API does not serve /campaigns yet (create_app does not wire it)"
            continue
        run.started = time.time()
        try:
            asyncio.run(_drive(run.case, servers, run.triggered))
        except Exception:
            run.error = traceback.format_exc()
        run.finished = time.time()


@dataclass
class Group:
    """Cases served by one API process. Its ``release`` (``SERVICE_VERSION``, which becomes
    the Sentry events' ``release``) tells its events from the other groups', which run at
    the same time; within a group, the cases run one after the other."""

    release: str
    runs: list[CaseRun]
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def run_of(self, event: Event) -> CaseRun | None:
        if event["data"].get("release") != self.release:
            return None
        if len(self.runs) == 1 and self.runs[0].case.needs_own_app:
            return self.runs[0]  # start-up and shutdown included
        at = captured_at(event)
        return next((run for run in self.runs if run.started <= at <= run.finished), None)


def _groups(runs: list[CaseRun]) -> list[Group]:
    """One group per case that needs an API of its own; one for all the others."""
    shared = Group("matrix-shared", [run for run in runs if not run.case.needs_own_app])
    own = [
        Group(f"matrix-{run.case.name}", [run], run.case.settings)
        for run in runs
        if run.case.needs_own_app
    ]
    return [group for group in (shared, *own) if group.runs]


def _run_group(group: Group, tmp_path: Path, users: Users, telemetry: Mapping[str, str]) -> None:
    log_dir = tmp_path / group.release
    log_dir.mkdir()
    database = log_dir / "app.db"
    shutil.copyfile(tmp_path / "users.db", database)
    with loopback_servers(
        log_dir,
        f"sqlite+aiosqlite:///{database}",
        users=users,
        settings=group.settings,
        telemetry={**telemetry, "SERVICE_VERSION": group.release},
    ) as servers:
        group.secrets = servers.secrets()
        _run_cases(servers, group.runs)


@pytest.fixture(scope="module")
def matrix(
    bugsink: BugsinkClient, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MatrixRun]:
    bugsink.clear()
    tmp_path = tmp_path_factory.mktemp("bugsink-matrix")
    shutil.copyfile(sqlite_template, tmp_path / "users.db")
    users = Users.create(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}")
    runs = {case.name: CaseRun(case) for case in LOOPBACK_CASES if not case.skip}
    groups = _groups(list(runs.values()))
    with OtlpReceiver() as receiver:
        telemetry = {
            "TELEMETRY_ERROR_BACKEND": "sentry",
            "SENTRY_DSN": bugsink.dsn,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        }
        # In parallel: most of the time is the processes' start-up.
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            for done in [
                pool.submit(_run_group, group, tmp_path, users, telemetry) for group in groups
            ]:
                done.result()
        spans = receiver.spans()
    minimum = sum(
        e.count.start if isinstance(e.count, range) else e.count
        for run in runs.values()
        if run.started and not run.error
        for e in run.case.expect
    )
    # Every process has stopped (Sentry flushed); wait a little more for late duplicates.
    events = bugsink.wait_for_events(minimum, timeout=20, settle=2.0)
    stray: list[Event] = []
    for event in events:
        owners = [run for group in groups if (run := group.run_of(event)) is not None]
        (owners[0].events if owners else stray).append(event)
    secrets = {k: v for group in groups for k, v in group.secrets.items()}
    secrets.update({"user password": USER_PASSWORD, "login password": PASSWORD})
    yield MatrixRun(runs, events, stray, spans, secrets)


# --- the promises -------------------------------------------------------------------------


def _local_root(span: ReceivedSpan, by_id: Mapping[str, ReceivedSpan]) -> ReceivedSpan:
    """The span that began ``span``'s trace in the service (its parent is remote or none)."""
    while span.parent_span_id is not None and span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
    return span


def assert_events_decided_on_the_expected_trace(run: CaseRun, spans: list[ReceivedSpan]) -> None:
    by_id = {span.span_id: span for span in spans}
    for event in run.events:
        summary = summarize(event["data"])
        [expected] = [x for x in run.case.expect if x.matches(summary)]
        if expected.trace is None:
            continue
        span = by_id.get(summary.span_id or "")
        assert span is not None, f"the span the event names was not exported: {summary}"
        assert span.trace_id == summary.trace_id
        decisions = [
            e.attributes
            for e in span.events
            if e.name == SPAN_EVENT_NAME and e.attributes.get(attrs.FEATURE) == summary.feature
        ]
        assert {"sent"} <= {d.get(attrs.DECISION_OUTCOME) for d in decisions}, span.events
        root = _local_root(span, by_id)
        assert root.name == expected.trace, f"{summary} is in the trace of {root.name!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault_reaches_bugsink_exactly_as_the_matrix_says(
    matrix: MatrixRun, case: FaultCase
) -> None:
    if case.skip or case.in_process:
        pytest.skip(case.skip or IN_PROCESS_ONLY)
    run = matrix.runs[case.name]
    if run.skipped:
        pytest.skip(run.skipped)
    assert run.error is None, run.error
    assert set(run.triggered.statuses) == {case.response_status}, run.triggered.statuses
    summaries = [summarize(event["data"]) for event in run.events]
    problems = check_events(case, summaries, run.triggered)
    assert not problems, "\n".join(problems)
    for event in run.events:
        assert event["data"]["environment"] == "production"
    assert_events_decided_on_the_expected_trace(run, matrix.spans)


def test_nothing_arrives_outside_the_cases(matrix: MatrixRun) -> None:
    assert [summarize(event["data"]) for event in matrix.stray] == []


def test_no_stored_event_contains_pii_or_secrets(matrix: MatrixRun) -> None:
    assert matrix.events, "no events: nothing was checked"
    for event in matrix.events:
        stored = json.dumps(event)  # the event as Bugsink keeps it, rendered stack included
        title = summarize(event["data"])
        for what, value in matrix.secrets.items():
            assert value not in stored, f"{what} stored in {title}"
        assert not JWT_PATTERN.search(stored), f"a JWT stored in {title}"
