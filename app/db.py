"""Database engine, sessions and the request unit of work.

The request's session (`SessionDep`) is the unit of work: committed when the endpoint
returns, rolled back when it raises. Services flush; the few places that must make a
row durable before talking to Bolna commit explicitly and say why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.config import Settings
from app.errors import ServiceUnavailable
from telemetry import capture_error


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if settings.is_sqlite:
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" below open transactions instead of the driver.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Switching to WAL needs the database to itself; `migrate` does it once, so
            # this is normally a read. Never switch when already in WAL.
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            # A deferred transaction that reads and then writes fails at once with
            # "database is locked" when another writer got in between (the busy timeout
            # does not apply to that upgrade). Taking the write lock up front makes
            # writers queue on the busy timeout instead.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "asyncpg":
        # `timeout` bounds connecting, `command_timeout` every statement (the pre-ping
        # included), so requests answer 503 instead of hanging on a silent database.
        connect_args = {
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_seconds,
        }
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_database_unavailable(exc: BaseException) -> bool:
    """True for connection failures and pool exhaustion, as opposed to bad queries."""
    if isinstance(exc, PoolTimeout | OSError | ConnectionError):
        return True
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException as exc:
            await session.rollback()
            if is_database_unavailable(exc):
                # The 503 handler reports nothing (an AppError): report the cause here.
                capture_error(exc, feature="database")
                raise ServiceUnavailable("The database is unavailable; try again shortly.") from exc
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
