"""Command line: `python -m app <command>`.

serve [--host 127.0.0.1] [--port 8000]       the API and its background workers
simulator [--host 127.0.0.1] [--port 8100]   the Bolna simulator
dev                                          migrate, demo user, API + simulator together
migrate                                      Alembic upgrade to head
create-user --email E [--password P] [--credits N]   prints {"user_id", "email", "token"}
telemetry status                             the error budget and telemetry setup, as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import secrets
import sys
from typing import Any

from app.config import ConfigError, Settings, get_settings


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except ValueError as exc:  # pydantic's ValidationError wraps ConfigError
        cause = exc.__cause__ or exc
        reason = str(cause).splitlines()[-1] if str(cause) else str(exc)
        for error in getattr(exc, "errors", lambda: [])():
            ctx_error = error.get("ctx", {}).get("error")
            if isinstance(ctx_error, ConfigError):
                reason = str(ctx_error)
        print(f"refusing to start: {reason}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_migrate(_: argparse.Namespace) -> int:
    from app.migrate import upgrade

    upgrade(_settings().database_url)
    print("database migrated to head")
    return 0


async def _create_user(email: str, password: str, credits: int) -> dict[str, Any]:
    from app.auth.service import create_token, create_user
    from app.credits.service import grant
    from app.db import create_engine, create_sessionmaker

    settings = _settings()
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            user = await create_user(session, email=email, password=password)
            if credits:
                await grant(
                    session, user.id, credits, reason="grant", idempotency_key=f"signup:{user.id}"
                )
            return {
                "user_id": user.id,
                "email": user.email,
                "credits": credits,
                "token": create_token(user.id, settings),
            }
    finally:
        await engine.dispose()


def cmd_create_user(args: argparse.Namespace) -> int:
    from app.errors import AppError

    password = args.password or secrets.token_urlsafe(12)
    try:
        result = asyncio.run(_create_user(args.email, password, args.credits))
    except AppError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    if not args.password:
        result["password"] = password
    print(json.dumps(result))
    return 0


class _RedactQuerySecrets(logging.Filter):
    """uvicorn's access log prints the query string: keep the webhook token out of it."""

    _secret = re.compile(r"((?:token|api_key|key)=)[^&\s\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._secret.sub(r"\1[REDACTED]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def _uvicorn_config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    # proxy_headers=False: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For for loopback peers; TRUSTED_PROXIES is the one rule for that.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", lifespan="on", proxy_headers=False
    )
    logging.getLogger("uvicorn.access").addFilter(_RedactQuerySecrets())
    return config


def _simulator_app(settings: Settings) -> Any:
    from app.simulator import create_simulator_app

    return create_simulator_app(
        public_base_url=settings.public_base_url,
        webhook_token=settings.bolna_webhook_token,
        api_key=settings.bolna_api_key,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = _settings()
    try:
        application = create_app(settings)
    except ValueError as exc:  # an unknown telemetry exporter or backend name
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    uvicorn.Server(_uvicorn_config(application, args.host, args.port)).run()
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.Server(_uvicorn_config(_simulator_app(_settings()), args.host, args.port)).run()
    return 0


async def _dev(host: str, api_port: int, sim_port: int) -> None:
    import uvicorn

    from app.main import create_app

    settings = _settings()
    api = uvicorn.Server(_uvicorn_config(create_app(settings), host, api_port))
    sim = uvicorn.Server(_uvicorn_config(_simulator_app(settings), host, sim_port))
    await asyncio.gather(api.serve(), sim.serve())


async def _demo_user() -> dict[str, Any]:
    from sqlalchemy import select

    from app.auth.service import create_token
    from app.db import create_engine, create_sessionmaker
    from app.models import User

    settings = _settings()
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await session.scalar(select(User).where(User.email == "demo@example.com"))
            if user is not None:
                return {
                    "user_id": user.id,
                    "email": user.email,
                    "token": create_token(user.id, settings),
                }
    finally:
        await engine.dispose()
    return await _create_user("demo@example.com", "demo-password", 1000)


def cmd_dev(args: argparse.Namespace) -> int:
    from app.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    demo = asyncio.run(_demo_user())
    print(
        "\n".join(
            [
                "",
                f"API        http://{args.host}:{args.port}   (docs: /docs)",
                f"Simulator  {settings.bolna_api_url}",
                "Demo user  demo@example.com / demo-password",
                f"export TOKEN={demo['token']}",
                "",
            ]
        ),
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_dev(args.host, args.port, args.sim_port))
    return 0


def cmd_telemetry(args: argparse.Namespace) -> int:
    import telemetry
    from app.budget_store import DatabaseBudgetStore
    from app.db import create_engine, create_sessionmaker
    from telemetry.settings import TelemetrySettings

    settings = _settings()

    async def _status() -> dict[str, Any]:
        engine = create_engine(settings)
        store = DatabaseBudgetStore()
        store.bind(create_sessionmaker(engine))
        tel = telemetry.configure(TelemetrySettings(app_env=settings.app_env), budget_store=store)
        try:
            await tel.sync_budget()
            return tel.status()
        finally:
            tel.shutdown()
            await engine.dispose()

    print(json.dumps(asyncio.run(_status()), indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API and its workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=cmd_serve)

    sim = commands.add_parser("simulator", help="run the Bolna simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8100)
    sim.set_defaults(handler=cmd_simulator)

    dev = commands.add_parser("dev", help="migrate, create a demo user, run API + simulator")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--sim-port", type=int, default=8100)
    dev.set_defaults(handler=cmd_dev)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to head")
    migrate.set_defaults(handler=cmd_migrate)

    create = commands.add_parser("create-user", help="create a user and print a token")
    create.add_argument("--email", required=True)
    create.add_argument("--password")
    create.add_argument("--credits", type=int, default=0)
    create.set_defaults(handler=cmd_create_user)

    tel = commands.add_parser("telemetry", help="telemetry commands")
    tel_commands = tel.add_subparsers(dest="telemetry_command", required=True)
    status = tel_commands.add_parser("status", help="print the telemetry status as JSON")
    status.set_defaults(handler=cmd_telemetry)

    args = parser.parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
