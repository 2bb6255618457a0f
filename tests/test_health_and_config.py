from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.config import DEV_BOLNA_API_KEY, DEV_JWT_SECRET, ConfigError, Settings
from tests.conftest import Stack, make_settings, running_stack


async def test_health_reports_db_workers_and_telemetry(stack: Stack):
    response = await stack.api.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["db"] == "ok"
    assert body["workers"]["webhook_retry"]["running"] is True
    assert "telemetry" in body


async def test_health_is_503_naming_the_database_when_it_is_unreachable(tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "app.db"
    settings = make_settings(f"sqlite+aiosqlite:///{missing_dir}")
    async with running_stack(settings, start_workers=False) as stack:
        response = await stack.api.get("/health")
        assert response.status_code == 503
        assert response.json()["db"].startswith("unavailable")
        login = await stack.api.post("/auth/login", json={"email": "a@b.c", "password": "x"})
        assert login.status_code == 503
        assert login.json()["error"] == "service_unavailable"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({}, "JWT_SECRET"),
        ({"jwt_secret": "short"}, "JWT_SECRET"),
        ({"jwt_secret": "x" * 40}, "BOLNA_API_KEY"),
        ({"jwt_secret": "x" * 40, "bolna_api_key": DEV_BOLNA_API_KEY}, "BOLNA_API_KEY"),
        ({"jwt_secret": "x" * 40, "bolna_api_key": "real-key"}, "BOLNA_WEBHOOK_TOKEN"),
    ],
)
def test_production_refuses_default_secrets(overrides, fragment):
    values = {"app_env": "production", "jwt_secret": DEV_JWT_SECRET, "bolna_api_key": ""}
    values.update(overrides)
    with pytest.raises((ConfigError, ValueError), match=fragment):
        Settings(**values)


def test_production_with_real_secrets_is_accepted():
    settings = Settings(
        app_env="production",
        jwt_secret="x" * 40,
        bolna_api_key="real-key",
        bolna_webhook_token="real-webhook-token",
    )
    assert settings.app_env == "production"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_refuses_to_start_in_production_with_a_one_line_reason(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "APP_ENV": "production",
        "JWT_SECRET": "",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
    }
    result = run_cli("serve", "--port", "1", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("refusing to start:")
    assert "JWT_SECRET" in lines[0]


def test_cli_migrate_and_create_user_print_a_usable_token(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "APP_ENV": "test",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "JWT_SECRET": "test-secret-with-at-least-32-characters!!",
    }
    assert run_cli("migrate", env=env).returncode == 0
    result = run_cli("create-user", "--email", "cli@example.com", "--credits", "250", env=env)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["user_id"] >= 1
    settings = Settings(database_url=env["DATABASE_URL"], jwt_secret=env["JWT_SECRET"])
    from app.auth.service import decode_token

    assert decode_token(created["token"], settings).user_id == created["user_id"]
    again = run_cli("create-user", "--email", "cli@example.com", env=env)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_cli_telemetry_status_prints_the_budget_as_json(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "APP_ENV": "production",
        "JWT_SECRET": "x" * 40,
        "BOLNA_API_KEY": "real-key",
        "BOLNA_WEBHOOK_TOKEN": "real-webhook-token",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/status.db",
        "ERROR_BUDGET_MONTHLY": "1234",
        "TELEMETRY_ERROR_BACKEND": "log",
        "OTEL_TRACES_EXPORTER": "none",
    }
    assert run_cli("migrate", env=env).returncode == 0
    result = run_cli("telemetry", "status", env=env)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["error_backend"] == "log"
    assert status["environment"] == "production"
    assert status["sending"] is True
    assert status["budget"]["monthly"] == 1234
    assert status["budget"]["remaining"] == 1234
