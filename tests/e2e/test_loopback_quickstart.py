"""The README quick start, for real: `python -m app serve` and `python -m app simulator` as
separate processes on loopback ports, talking HTTP to each other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.loopback import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up within {timeout}s")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    api_port, sim_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))},
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/e2e.db",
        "BOLNA_API_URL": f"http://127.0.0.1:{sim_port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "BOLNA_WEBHOOK_TOKEN": "e2e-token",
        "OTEL_TRACES_EXPORTER": "none",
        "TELEMETRY_ERROR_BACKEND": "log",
    }
    run = [sys.executable, "-m", "app"]
    subprocess.run(
        [*run, "migrate"], env=env, cwd=ROOT, check=True, timeout=60, capture_output=True
    )
    created = subprocess.run(
        [*run, "create-user", "--email", "e2e@example.com", "--credits", "500"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    import json

    token = json.loads(created.stdout)["token"]
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("api", "sim")}  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [*run, "serve", "--port", str(api_port)],
            env=env,
            cwd=ROOT,
            stdout=logs["api"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*run, "simulator", "--port", str(sim_port)],
            env=env,
            cwd=ROOT,
            stdout=logs["sim"],
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{api_port}/health")
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/calls")
        yield {
            "api": f"http://127.0.0.1:{api_port}",
            "sim": f"http://127.0.0.1:{sim_port}",
            "token": token,
            "logs": str(tmp_path),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for handle in logs.values():
            handle.close()


def test_quick_start_call_completes_over_loopback(servers):
    headers = {"Authorization": f"Bearer {servers['token']}"}
    with httpx.Client(base_url=servers["api"], headers=headers, timeout=10) as api:
        agent = api.post(
            "/agents",
            json={"name": "Demo", "bolna_agent_id": "6f1c2c1e-1111-4111-8111-111111111111"},
        )
        assert agent.status_code == 201, agent.text
        contact = api.post("/contacts", json={"name": "Asha", "phone_number": "+919876543210"})
        assert contact.status_code == 201
        call = api.post(
            "/calls", json={"agent_id": agent.json()["id"], "contact_id": contact.json()["id"]}
        )
        assert call.status_code == 201, call.text
        call_id = call.json()["id"]
        deadline = time.monotonic() + 30
        body = api.get(f"/calls/{call_id}").json()
        while body["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
            body = api.get(f"/calls/{call_id}").json()
        assert body["status"] == "completed", body
        assert body["transcript"]
        assert body["credits_charged"] > 0
        credits = api.get("/credits").json()
        assert credits["balance"] == 500 - body["credits_charged"]
    sim_calls = httpx.get(f"{servers['sim']}/_sim/calls").json()
    assert sim_calls[0]["recipient_phone_number"] == "+919876543210"
