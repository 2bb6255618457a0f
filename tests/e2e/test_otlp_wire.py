"""OTLP on the wire: the app, run as `python -m app serve` in production mode, exports its
spans and its error reports over OTLP/HTTP to a receiver that decodes the real protobufs.

A full call (agent, contact, call, webhooks up to `completed`) and one Bolna failure
(simulator answers 500, the API answers 502) are driven through the real API; the
assertions read only what arrived at the receiver.

`loopback_servers` (the API and the simulator as subprocesses in production mode, with the
tests' settings) is also used by `test_bugsink_matrix.py`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from telemetry import attributes as attrs
from tests.conftest import create_user_token, make_settings
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedLogRecord, ReceivedSpan
from tests.e2e.test_loopback_quickstart import free_port
from tests.faults import PHONE

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PHONE_DIGITS = PHONE.removeprefix("+91")
# Only what a process needs to run: everything the app reads is set explicitly, and the
# processes run outside the repository, so neither the environment nor a developer's
# .env can change what these tests see.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")
# Telemetry for every run: production sends; export within a fraction of a second rather
# than the SDKs' default seconds; nothing else configured (tests add their backends).
TELEMETRY_ENV: Mapping[str, str] = {
    "TELEMETRY_SEND_ENVIRONMENTS": "production",
    "OTEL_TRACES_SAMPLER_ARG": "1.0",
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_TRACES_EXPORTER": "none",
    "TELEMETRY_ERROR_BACKEND": "log",
    "SENTRY_DSN": "",
}
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Users:
    token: str  # 1000 credits
    broke_token: str  # none

    @classmethod
    def create(cls, database_url: str) -> Users:
        """Two users in ``database_url`` (migrated), with tokens the app will accept."""
        settings = make_settings(database_url)

        async def create() -> Users:
            return cls(
                await create_user_token(settings, "rich@example.com", 1000),
                await create_user_token(settings, "broke@example.com", 0),
            )

        return asyncio.run(create())


@dataclass
class Loopback:
    """The API and the simulator running as subprocesses on loopback ports."""

    api: str
    sim: str
    settings: Settings  # what the API runs with (secrets included)
    users: Users
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopped: dict[str, int | None] = field(default_factory=dict)  # name -> exit code

    def stop(self, name: str) -> None:
        """Stop "api" or "sim" now (SIGTERM, then wait); a no-op when already stopped."""
        if name in self.procs and name not in self.stopped:
            self.stopped[name] = _stop(self.procs[name])

    def client(self) -> httpx.Client:
        """A client for the API, signed in as the user with credits."""
        headers = {"Authorization": f"Bearer {self.users.token}"}
        return httpx.Client(base_url=self.api, headers=headers, timeout=15)

    def faults(self, **body: Any) -> None:
        httpx.post(f"{self.sim}/_sim/faults", json=body, timeout=5).raise_for_status()

    def wait_sim_idle(self, timeout: float = 15.0) -> None:
        """Until every call the simulator placed has delivered (or given up) its webhooks."""
        wait_until(
            lambda: all(
                c["finished_at"] for c in httpx.get(f"{self.sim}/_sim/calls", timeout=5).json()
            ),
            timeout,
            "the simulator to deliver its webhooks",
        )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def secrets(self) -> dict[str, str]:
        """What must never be exported or stored: description -> value."""
        return {
            "phone number": PHONE_DIGITS,
            "user's JWT": self.users.token,
            "broke user's JWT": self.users.broke_token,
            "Bolna API key": self.settings.bolna_api_key,
            "webhook token": self.settings.bolna_webhook_token,
            "JWT secret": self.settings.jwt_secret,
        }


def wait_until(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """The first truthy result of ``probe``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


def _wait_started(servers: Loopback, name: str, url: str) -> None:
    proc = servers.procs[name]
    wait_until(
        lambda: _answers(url) or proc.poll() is not None,
        START_TIMEOUT_SECONDS,
        f"{url} to answer",
    )
    assert proc.poll() is None, f"{name} exited: {servers.log(name)[-3000:]}"


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the environment variables that make a process read it back."""
    return {name.upper(): str(value) for name, value in settings.model_dump().items()}


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (uvicorn shuts down gracefully: the lifespan flushes telemetry), then wait."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        return None


@contextmanager
def loopback_servers(
    log_dir: Path,
    database_url: str,
    *,
    users: Users | None = None,
    settings: Mapping[str, Any] | None = None,
    telemetry: Mapping[str, str] | None = None,
) -> Iterator[Loopback]:
    """`python -m app serve` and `python -m app simulator`, in production mode.

    The API runs with the tests' settings (``make_settings``: fast retries, short
    timeouts) plus ``settings`` overrides, and ``TELEMETRY_ENV`` plus ``telemetry``.
    ``database_url`` must be migrated (the ``sqlite_url`` fixture is); ``users`` are made
    in it unless given. Both processes are stopped with SIGTERM on exit (``stopped`` then
    has their exit codes), so the API's shutdown has flushed its telemetry by then.
    """
    users = users or Users.create(database_url)
    api_port, sim_port = free_port(), free_port()
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    app_settings = make_settings(
        **{
            "database_url": database_url,
            "app_env": "production",
            "bolna_api_url": sim,
            "public_base_url": api,
            **(settings or {}),  # a case's own wins: an unreachable Bolna, a missing database
        }
    )
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(settings_env(app_settings))
    env.update(TELEMETRY_ENV)
    env.update(telemetry or {})
    commands = {
        "api": [sys.executable, "-m", "app", "serve", "--port", str(api_port)],
        "sim": [sys.executable, "-m", "app", "simulator", "--port", str(sim_port)],
    }
    servers = Loopback(api, sim, app_settings, users, log_dir)
    try:
        for name, command in commands.items():
            with open(log_dir / f"{name}.log", "wb") as log:
                servers.procs[name] = subprocess.Popen(
                    command, env=env, cwd=log_dir, stdout=log, stderr=subprocess.STDOUT
                )
        _wait_started(servers, "api", f"{api}/health")  # any answer: 503 when the DB is down
        _wait_started(servers, "sim", f"{sim}/_sim/calls")
        servers.faults(step_delay_ms=20)
        yield servers
    finally:
        servers.stop("sim")  # first: no webhook lands mid-shutdown
        servers.stop("api")


def assert_shut_down_gracefully(servers: Loopback, name: str) -> None:
    """Stopped by our SIGTERM after its lifespan finished (uvicorn re-raises the signal)."""
    assert servers.stopped[name] in (0, -signal.SIGTERM), servers.log(name)[-3000:]
    assert "Application shutdown complete" in servers.log(name), servers.log(name)[-3000:]


# --- helpers over decoded spans -----------------------------------------------------------


def one(items: list[ReceivedSpan], what: str) -> ReceivedSpan:
    assert len(items) == 1, f"expected one {what}, got {len(items)}: {[s.name for s in items]}"
    return items[0]


def server_span(spans: list[ReceivedSpan], name: str, status: int) -> ReceivedSpan:
    return one(
        [
            s
            for s in spans
            if s.kind == "SERVER"
            and s.name == name
            and s.attributes.get(attrs.HTTP_RESPONSE_STATUS_CODE) == status
        ],
        f"{name} server span answering {status}",
    )


def child(spans: list[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    return one(
        [s for s in spans if s.parent_span_id == parent.span_id and s.name == name],
        f"{name} under {parent.name}",
    )


def assert_nothing_secret(
    exported: list[ReceivedSpan] | list[ReceivedLogRecord], servers: Loopback
) -> None:
    """No phone number digits, JWT, API key or webhook token anywhere in what was exported."""
    for item in exported:
        text = repr(item)  # every field: name, attributes, events, links, body, resource
        for what, value in servers.secrets().items():
            assert value not in text, f"{what} exported in {text[:300]}"


# --- the test -----------------------------------------------------------------------------


def test_call_flow_and_bolna_failure_arrive_as_decoded_otlp(
    tmp_path: Path, sqlite_url: str, otlp_receiver: OtlpReceiver
) -> None:
    otlp = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "TELEMETRY_ERROR_BACKEND": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
    }
    with (
        loopback_servers(tmp_path, sqlite_url, telemetry=otlp) as servers,
        servers.client() as api,
    ):
        agent = api.post(
            "/agents",
            json={"name": "Wire", "bolna_agent_id": "6f1c2c1e-1111-4111-8111-111111111111"},
        )
        assert agent.status_code == 201, agent.text
        contact = api.post("/contacts", json={"name": "Asha", "phone_number": PHONE})
        assert contact.status_code == 201, contact.text
        target = {"agent_id": agent.json()["id"], "contact_id": contact.json()["id"]}

        placed = api.post("/calls", json=target)
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["id"]
        wait_until(
            lambda: api.get(f"/calls/{call_id}").json()["status"] == "completed",
            20,
            f"call {call_id} to complete",
        )
        servers.wait_sim_idle()

        servers.faults(call={"mode": "500"})
        failed = api.post("/calls", json=target)
        assert failed.status_code == 502, failed.text
        assert failed.json()["error"] == "bolna_server_error"

        # Exported while the app runs (OTEL_BSP/BLRP_SCHEDULE_DELAY honoured), not only
        # at shutdown.
        otlp_receiver.wait_for(otlp_receiver.logs, timeout=10)
        otlp_receiver.wait_for(
            lambda: any(
                s.attributes.get(attrs.CALL_STATUS) == "completed"
                for s in otlp_receiver.spans(name="webhook.process")
            ),
            timeout=10,
        )
    assert_shut_down_gracefully(servers, "api")

    spans = otlp_receiver.spans()
    logs = otlp_receiver.logs()

    # Every span and record names this service, version, environment and process.
    instance_ids = {s.resource.get(attrs.SERVICE_INSTANCE_ID) for s in spans}
    assert len(instance_ids) == 1 and None not in instance_ids, instance_ids
    for resource in [*(s.resource for s in spans), *(r.resource for r in logs)]:
        assert resource[attrs.SERVICE_NAME] == "calling-backend"
        assert resource[attrs.SERVICE_VERSION]
        assert resource[attrs.DEPLOYMENT_ENVIRONMENT] == "production"
        assert resource.get(attrs.SERVICE_INSTANCE_ID) in instance_ids

    # The successful call: server span -> call.initiate -> bolna.make_call -> HTTP client.
    server = server_span(spans, "POST /calls", 201)
    initiate = child(spans, server, "call.initiate")
    assert initiate.attributes[attrs.CALL_ID] == call_id
    assert initiate.attributes[attrs.CALL_SOURCE] == "direct"
    assert initiate.status_code != "ERROR"
    make_call = child(spans, initiate, "bolna.make_call")
    assert make_call.attributes[attrs.BOLNA_ENDPOINT] == "/call"
    http_client = one(
        [s for s in spans if s.parent_span_id == make_call.span_id and s.kind == "CLIENT"],
        "HTTP client span under bolna.make_call",
    )
    # httpx's contrib instrumentation still uses the older semantic-convention name.
    status_names = (attrs.HTTP_RESPONSE_STATUS_CODE, "http.status_code")
    assert [http_client.attributes.get(name) for name in status_names] in ([200, None], [None, 200])
    sql = [s for s in spans if s.trace_id == server.trace_id and attrs.DB_SYSTEM in s.attributes]
    assert sql, "no SQL spans in the POST /calls trace"
    assert all(s.kind == "CLIENT" and s.attributes[attrs.DB_STATEMENT] for s in sql)

    # Each webhook is processed in its own trace, linked to the span that placed the call.
    processed = [
        s for s in spans if s.name == "webhook.process" and s.attributes.get(attrs.CALL_ID)
    ]
    statuses = [s.attributes[attrs.WEBHOOK_STATUS] for s in processed]
    assert "completed" in statuses and len(processed) >= 6, statuses
    for span in processed:
        assert span.trace_id != initiate.trace_id
        assert [(link.trace_id, link.span_id) for link in span.links] == [
            (initiate.trace_id, initiate.span_id)
        ]
        webhook_server = one(
            [s for s in spans if s.span_id == span.parent_span_id], "webhook server span"
        )
        assert (webhook_server.kind, webhook_server.name) == ("SERVER", "POST /webhooks/bolna")

    # The failure: one error record, in the failed request's trace, from call.initiate.
    failed_server = server_span(spans, "POST /calls", 502)
    failed_initiate = child(spans, failed_server, "call.initiate")
    assert failed_initiate.status_code == "ERROR"
    assert [(r.severity_text, r.severity_number) for r in logs] == [("ERROR", 17)], logs
    [record] = logs
    assert record.trace_id == failed_server.trace_id
    assert record.span_id == failed_initiate.span_id
    assert record.body.startswith("BolnaServerError")
    assert record.attributes[attrs.FEATURE] == "call_initiation"
    assert record.attributes[attrs.ERROR_LEVEL] == "error"
    assert record.attributes[attrs.ERROR_TYPE] == "BolnaServerError"
    assert record.attributes[attrs.CALL_SOURCE] == "direct"
    assert record.attributes[attrs.BOLNA_ENDPOINT] == "/call"
    assert record.attributes[attrs.HTTP_STATUS_CLASS] == "5xx"
    assert record.attributes["exception.type"] == "app.bolna.errors.BolnaServerError"
    assert record.attributes["exception.stacktrace"]

    assert_nothing_secret(spans, servers)
    assert_nothing_secret(logs, servers)
