"""Databases for the workers: a migrated SQLite template copied per worker, or PostgreSQL.

template = sqlite_template(run_dir)            # migrated once per run
url = sqlite_copy(template, run_dir, "off")    # one file per worker
pg = postgres_url()          # a bench database next to TEST_POSTGRES_URL's, migrated, emptied
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine


def sqlite_template(run_dir: Path) -> Path:
    from app.migrate import upgrade

    path = run_dir / "template.db"
    for stale in run_dir.glob("*.db*"):
        stale.unlink()
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def sqlite_copy(template: Path, run_dir: Path, name: str) -> str:
    path = run_dir / f"{name}.db"
    for stale in run_dir.glob(f"{name}.db*"):
        stale.unlink()
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


def postgres_url() -> str | None:
    """A database of the bench's own on the server of TEST_POSTGRES_URL, migrated and emptied.

    ``eval "$(scripts/pg_start.sh)"`` sets TEST_POSTGRES_URL. The test suite's database on
    that server is never touched: the bench creates ``<name>_bench`` next to it.
    """
    url = os.environ.get("TEST_POSTGRES_URL") or os.environ.get("DATABASE_URL_PG")
    if not url:
        return None
    base = make_url(url).set(drivername="postgresql+asyncpg")
    bench = base.set(database=f"{base.database}_bench")
    asyncio.run(_create_database(base, bench.database or "app_bench"))
    bench_url = bench.render_as_string(hide_password=False)
    from app.migrate import empty_postgres_tables, upgrade

    upgrade(bench_url)
    asyncio.run(empty_postgres_tables(bench_url))
    return bench_url


async def _create_database(base: URL, name: str) -> None:
    engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
