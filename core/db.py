"""Database engine, sessions and the request's transaction.

One small pool per process (PostgreSQL throughput falls beyond 4-8 concurrent writers);
each new connection runs one geography call, because the first one costs 7-13 ms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry

from core.settings import get_settings

WARM_UP_SQL = "SELECT ST_DWithin('POINT(0 0)'::geography, 'POINT(0 0)'::geography, 1)"


class Base(DeclarativeBase):
    """ORM mapping for the merchant-side CRUD. The schema itself is the SQL in migrations/sql."""


def make_engine(url: str, pool_size: int) -> AsyncEngine:
    # No overflow: a burst waits for a warm pooled connection instead of opening (and warming,
    # and closing again) extra ones, which costs more than the wait.
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=5, pool_recycle=3600)

    @event.listens_for(engine.sync_engine, "connect")
    def _warm_up(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Runs inside the async driver via SQLAlchemy's greenlet adapter.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(WARM_UP_SQL)
        except Exception:  # PostGIS absent (before migrations): readiness reports it
            pass
        finally:
            cursor.close()
        dbapi_connection.rollback()

    return engine


@lru_cache
def get_engine() -> AsyncEngine:
    settings = get_settings()
    return make_engine(settings.database_url, settings.db_pool_size)


@lru_cache
def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(get_engine(), expire_on_commit=False)


async def transaction() -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed when the handler succeeds (before the
    response is sent), rolled back when it raises. Services only flush."""
    async with get_sessionmaker()() as session, session.begin():
        yield session


async def autocommit_connection() -> AsyncIterator[AsyncConnection]:
    """For the hot paths, which are one statement each (a database function): no
    BEGIN/COMMIT round trips, the statement is its own transaction."""
    async with get_engine().connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")
