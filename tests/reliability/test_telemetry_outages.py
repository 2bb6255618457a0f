"""Telemetry never breaks business: with Sentry or the collector unreachable or hung, an
exporter that raises, or the error budget's store failing or hanging, every API request
still answers as usual and in its usual time, and shutdown finishes within its bound.

In-process cases drive the whole stack (a call that completes through the simulator's
webhooks, a Bolna failure that is reported, reads) with production telemetry pointed at
the broken destination. The hung destinations run against the real process: the API
served on loopback, stopped with SIGTERM, must exit on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import telemetry
from telemetry.otel_setup import current
from telemetry.settings import TelemetrySettings
from telemetry.testing import observe_exports, settings_for_tests
from tests.conftest import Stack, create_user_token, make_settings, running_stack
from tests.e2e.loopback import assert_shut_down_gracefully, free_port, loopback_servers
from tests.faults import PHONE
from tests.helpers import AGENT_UUID, make_agent, wait_for_call
from tests.reliability.netfaults import black_hole
from tests.test_error_matrix import _no_leftover_telemetry  # noqa: F401  (autouse)

# Far above a request's usual tens of milliseconds, far below what a stuck exporter costs
# (the OTLP exporter's 10 s timeout, a 30 s hang): noise cannot fail it, a wait on
# telemetry would.
REQUEST_SECONDS = 5.0
# Telemetry's shutdown is bounded at 5 s, the budget's last sync at 2 s.
SHUTDOWN_SECONDS = 12.0
TEST_DEADLINE_SECONDS = 60.0  # a hang fails the test instead of stalling the run


def production_telemetry(**overrides: Any) -> TelemetrySettings:
    """What production runs: every trace sampled and exported, errors sent."""
    return settings_for_tests(app_env="production", log_format="json", **overrides)


def closed_port_url(user: str = "") -> str:
    return f"http://{user}127.0.0.1:{free_port()}"


class RaisingExporter(SpanExporter):
    """An exporter that fails at everything it is asked to do."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise RuntimeError("exporter exploded")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        raise RuntimeError("exporter exploded while flushing")

    def shutdown(self) -> None:
        raise RuntimeError("exporter exploded while shutting down")


@dataclass
class BrokenBudgetStore:
    """The error budget's shared store, failing (``hang=False``) or never answering."""

    hang: bool
    calls: int = 0

    async def add_and_read(self, month: str, deltas: Mapping[str, int]) -> Mapping[str, int]:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("budget store unavailable")


@dataclass
class TelemetryFault:
    """Telemetry configured before the app (whose own ``configure()`` then returns it)."""

    settings: Any
    # What must have been handed over while the destination was broken (``_tap`` kinds).
    handed_over: frozenset[str] = frozenset()
    span_exporters: list[RaisingExporter] = field(default_factory=list)
    budget_store: BrokenBudgetStore | None = None

    def configure(self) -> None:
        telemetry.configure(
            self.settings, span_exporters=self.span_exporters, budget_store=self.budget_store
        )

    def exercised(self, exported: list[tuple[str, object]]) -> list[str]:
        """What was not tried, if anything: the broken part must really have been used."""
        missing = [f"no {kind} handed over" for kind in self.handed_over - {k for k, _ in exported}]
        if self.budget_store is not None and not self.budget_store.calls:
            missing.append("the budget store was never asked")
        missing.extend(
            f"{type(e).__name__} never exported" for e in self.span_exporters if not e.calls
        )
        return missing


def _sentry_unreachable() -> TelemetryFault:
    dsn = closed_port_url("public@") + "/1"
    return TelemetryFault(
        production_telemetry(traces_exporter="sentry", error_backend="sentry", sentry_dsn=dsn),
        handed_over=frozenset({"span", "sentry_event"}),
    )


def _collector_unreachable() -> TelemetryFault:
    return TelemetryFault(
        production_telemetry(traces_exporter="otlp", otlp_endpoint=closed_port_url()),
        handed_over=frozenset({"span"}),
    )


def _exporter_raises() -> TelemetryFault:
    return TelemetryFault(production_telemetry(), span_exporters=[RaisingExporter()])


def _budget_store(hang: bool) -> Callable[[], TelemetryFault]:
    def build() -> TelemetryFault:
        return TelemetryFault(
            production_telemetry(),
            handed_over=frozenset({"error_report"}),  # budget spent while the store is out
            budget_store=BrokenBudgetStore(hang),
        )

    return build


FAULTS: dict[str, Callable[[], TelemetryFault]] = {
    "sentry_unreachable": _sentry_unreachable,
    "collector_unreachable": _collector_unreachable,
    "exporter_raises": _exporter_raises,
    "budget_store_raises": _budget_store(hang=False),
    "budget_store_hangs": _budget_store(hang=True),
}


async def timed(request: Awaitable[httpx.Response]) -> httpx.Response:
    started = time.monotonic()
    response = await request
    elapsed = time.monotonic() - started
    assert elapsed < REQUEST_SECONDS, f"{response.request.url.path} took {elapsed:.1f}s"
    return response


async def business_as_usual(stack: Stack, token: str) -> None:
    """A call that completes and is charged, a Bolna failure reported as a 502, reads."""
    auth = stack.auth(token)
    balance = (await timed(stack.api.get("/credits", headers=auth))).json()["balance"]
    agent_id = await make_agent(stack, token)
    placed = await timed(
        stack.api.post("/calls", json={"agent_id": agent_id, "phone_number": PHONE}, headers=auth)
    )
    assert placed.status_code == 201, placed.text
    call = await wait_for_call(stack, token, placed.json()["id"])
    assert call["credits_charged"] > 0

    await stack.faults(call={"mode": "500"})
    failed = await timed(
        stack.api.post("/calls", json={"agent_id": agent_id, "phone_number": PHONE}, headers=auth)
    )
    await stack.faults(call={"mode": "ok"})
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"] == "bolna_server_error"

    credits = await timed(stack.api.get("/credits", headers=auth))
    assert credits.json()["balance"] == balance - call["credits_charged"]
    health = await timed(stack.api.get("/health"))
    assert (health.status_code, health.json()["db"]) == (200, "ok")


@pytest.mark.parametrize("fault_name", list(FAULTS))
async def test_requests_answer_as_usual_and_shutdown_is_bounded(
    fault_name: str, sqlite_url: str
) -> None:
    fault = FAULTS[fault_name]()
    settings = make_settings(sqlite_url)
    fault.configure()
    stopping: float | None = None
    try:
        async with (
            asyncio.timeout(TEST_DEADLINE_SECONDS),
            running_stack(settings) as stack,
        ):
            token = await create_user_token(settings, "alice@example.com", 1000)
            with observe_exports() as exported:
                await business_as_usual(stack, token)
                stack.app.state.workers.poke("telemetry_budget")
                await asyncio.sleep(0.1)  # the budget sync runs (and fails, or hangs) meanwhile
                await business_as_usual(stack, token)
            assert not fault.exercised(exported), fault.exercised(exported)
            stopping = time.monotonic()
    finally:
        leftover = current()
        if leftover is not None:
            leftover.shutdown(timeout_s=1.0)
    assert stopping is not None
    took = time.monotonic() - stopping
    assert took < SHUTDOWN_SECONDS, f"shutdown took {took:.1f}s"


def _timed_sync(send: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.monotonic()
    response = send()
    elapsed = time.monotonic() - started
    assert elapsed < REQUEST_SECONDS, f"{response.request.url.path} took {elapsed:.1f}s"
    return response


@pytest.mark.e2e
def test_a_hung_collector_and_sentry_cost_requests_nothing_and_do_not_hold_up_shutdown(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Both destinations accept the connection and never answer: the exporters hang."""
    with black_hole() as collector, black_hole() as sentry:
        hung = {
            "OTEL_TRACES_EXPORTER": "otlp,sentry",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector}",
            "SENTRY_DSN": f"http://public@127.0.0.1:{sentry}/1",
            "TELEMETRY_ERROR_BACKEND": "sentry",
        }
        with loopback_servers(tmp_path, sqlite_url, telemetry=hung) as servers:
            with servers.client() as api:
                agent = _timed_sync(
                    lambda: api.post(
                        "/agents", json={"name": "Sales", "bolna_agent_id": AGENT_UUID}
                    )
                )
                call = {"agent_id": agent.json()["id"], "phone_number": PHONE}
                placed = _timed_sync(lambda: api.post("/calls", json=call))
                assert placed.status_code == 201, placed.text
                servers.faults(call={"mode": "500"})
                for _ in range(3):  # errors and spans pile up behind the hung exporters
                    failed = _timed_sync(lambda: api.post("/calls", json=call))
                    assert failed.status_code == 502, failed.text
                servers.faults(call={"mode": "ok"})
                servers.wait_sim_idle()
                done = _timed_sync(lambda: api.get(f"/calls/{placed.json()['id']}")).json()
                assert done["status"] == "completed", done
                assert _timed_sync(lambda: api.get("/health")).status_code == 200
            servers.stop("sim")
            started = time.monotonic()
            servers.stop("api")
            took = time.monotonic() - started
        assert_shut_down_gracefully(servers, "api")
        assert took < SHUTDOWN_SECONDS, f"SIGTERM to exit took {took:.1f}s"
