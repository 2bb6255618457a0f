"""The API and the simulator as real processes on loopback ports, in production mode.

    with loopback_servers(tmp_path, sqlite_url, telemetry={"OTEL_TRACES_EXPORTER": "otlp"}) as s:
        with s.client() as api:
            api.post("/calls", json=...)

Used by the OTLP-on-the-wire and Bugsink end-to-end tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from tests.conftest import create_user_token, make_settings
from tests.faults import PHONE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
