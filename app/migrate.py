"""Run Alembic migrations from code (`python -m app migrate`, tests, `make run`)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def _outside_event_loop(fn: Callable[[], None]) -> None:
    """Alembic's env runs its own event loop; from inside a running one, use a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn).result()


def _sqlite_path(database_url: str) -> str | None:
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("///", 1)[-1]
    return path if path and path != ":memory:" else None


def upgrade(database_url: str, revision: str = "head") -> None:
    path = _sqlite_path(database_url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    _outside_event_loop(lambda: command.upgrade(alembic_config(database_url), revision))
    if path is not None:
        # WAL is persistent: set it once here, while nothing else has the file open,
        # rather than racing for an exclusive lock when the app's connections open.
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")


def downgrade(database_url: str, revision: str) -> None:
    _outside_event_loop(lambda: command.downgrade(alembic_config(database_url), revision))


async def empty_postgres_tables(database_url: str) -> None:
    """Delete every row of the app's tables on PostgreSQL (tests and benchmarks reuse one
    migrated database). The table list comes from the models, so it cannot go stale."""
    import app.campaigns.models
    import app.models  # noqa: F401
    from app.db import Base

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
