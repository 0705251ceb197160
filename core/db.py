"""Database engine, sessions and the request's transaction.

One small pool per process (PostgreSQL throughput falls beyond 4-8 concurrent writers);
each new connection runs one geography call, because the first one costs 7-13 ms.

When PostgreSQL is away (restarting, refusing connections), a request answers 503
`database_unavailable` with Retry-After instead of a 500, and its detail says whether it may have
been applied. A pooled connection that the server ended while it sat idle is noticed at checkout
without a round trip (its socket has something to read) and replaced, so once the server is back
no request fails on a connection left over from before.
"""

from __future__ import annotations

import logging
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Literal

import psycopg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from core.errors import ServiceUnavailable
from core.settings import get_settings

log = logging.getLogger(__name__)

WARM_UP_SQL = "SELECT ST_DWithin('POINT(0 0)'::geography, 'POINT(0 0)'::geography, 1)"

# A restart of PostgreSQL takes a few seconds; clients (the SDK among them) wait this long first.
RETRY_AFTER_S = 2
# Bounds a connection attempt to a server that does not answer at all (libpq's minimum is 2 s);
# a server that is down or starting up refuses at once.
CONNECT_TIMEOUT_S = 3

# How a checkout makes sure a pooled connection is still alive:
# - "socket": a poll() of the connection's socket (no round trip): an idle connection has nothing
#   to read until the server ends it, so a readable socket is a connection to replace;
# - "ping": SQLAlchemy's pool_pre_ping, an empty statement to the server on every checkout;
# - "none": nothing (a connection the server ended fails the request that draws it).
# The bench measures what each costs on the check-in path (bench/pool_check.py).
CheckoutCheck = Literal["socket", "ping", "none"]


class Base(DeclarativeBase):
    """ORM mapping for the merchant-side CRUD. The schema itself is the SQL in migrations/sql."""


def make_engine(url: str, pool_size: int, *, checkout_check: CheckoutCheck = "socket") -> AsyncEngine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in make_url(url).query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    # No overflow: a burst waits for a warm pooled connection instead of opening (and warming,
    # and closing again) extra ones, which costs more than the wait.
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=5,
        pool_recycle=3600,
        pool_pre_ping=checkout_check == "ping",
        connect_args=connect_args,
        hide_parameters=True,  # error messages would otherwise carry codes and positions into the logs
    )

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

    if checkout_check == "socket":
        event.listen(engine.sync_engine, "checkout", _replace_if_ended_by_server)
    return engine


def _replace_if_ended_by_server(
    _dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Checkout hook: DisconnectionError makes the pool drop this connection and open a new one."""
    if ended_by_server(record.driver_connection):
        raise sa_exc.DisconnectionError("the server ended this pooled connection")


def ended_by_server(connection: Any) -> bool:
    """Whether an idle psycopg connection is dead. PostgreSQL sends nothing to an idle connection
    until it ends it (a restart, an administrator, an idle timeout): then its last message and the
    end of the stream are waiting on the socket. One poll() with a zero timeout, no round trip."""
    if not isinstance(connection, psycopg.AsyncConnection | psycopg.Connection):
        return False
    if connection.closed or connection.broken:
        return True
    poller = select.poll()
    poller.register(connection.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


@lru_cache
def get_engine() -> AsyncEngine:
    settings = get_settings()
    return make_engine(settings.database_url, settings.db_pool_size)


@lru_cache
def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(get_engine(), expire_on_commit=False)


# --------------------------------------------------------------------------- database away

# SQLSTATE classes and codes that mean the server is not there for us now: 08 connection exception,
# 53 insufficient resources (too many connections among them), 57P01-57P05 shutdown, crash, starting
# up, database dropped, idle session timeout. Not 57014 (a cancelled statement) nor 40001 (a
# serialization failure): psycopg files those under OperationalError too, but they are the request's.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")

# Exceptions that may mean the database is away; `unavailable()` decides for each one.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sa_exc.DBAPIError, sa_exc.TimeoutError, psycopg.OperationalError)

NOT_APPLIED = "not_applied"  # failed before anything reached the database, or before the commit
UNKNOWN = "unknown"  # the connection was lost after the statement or the commit was sent


def database_away(exc: BaseException) -> bool:
    """Whether an error means the database could not be reached or the connection broke, rather
    than anything about the request: a connection SQLAlchemy found broken, a pool that could not
    hand out a connection in time, or a psycopg error without a server answer or in the classes above."""
    if isinstance(exc, sa_exc.TimeoutError):  # the pool: every connection busy or unopenable
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.OperationalError):
        sqlstate = exc.sqlstate
        return sqlstate is None or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return False


_DETAILS = {
    NOT_APPLIED: "the database is unavailable, and this request changed nothing; send it again in a moment",
    UNKNOWN: (
        "the connection to the database was lost after this request was sent to it, so it may or may "
        "not have been applied. Send it again with the same Idempotency-Key: if it was applied, you "
        "get its stored answer, else it runs now. Without a key, look before you repeat it"
    ),
}


def unavailable(exc: BaseException, outcome: str = UNKNOWN) -> ServiceUnavailable | None:
    """The 503 `database_unavailable` for an error that means the database is away, else None.
    `outcome` says whether the request may have been applied; unknown unless the caller knows."""
    if not database_away(exc):
        return None
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    # The type and the driver's first line only: SQLAlchemy's text carries the statement's parameters.
    log.warning(
        "database unavailable (%s): %s: %s", outcome, type(cause).__name__, str(cause).strip().split("\n", 1)[0]
    )
    return ServiceUnavailable(RETRY_AFTER_S, _DETAILS[outcome], code="database_unavailable", outcome=outcome)


# --------------------------------------------------------------------------- request dependencies


async def transaction() -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed when the handler succeeds (before the
    response is sent), rolled back when it raises. Services only flush. A lost connection is
    503: nothing applied while the handler ran, outcome unknown when it broke during the commit."""
    committing = False
    try:
        async with get_sessionmaker()() as session, session.begin():
            yield session
            committing = True
    except DATABASE_ERRORS as exc:
        if (problem := unavailable(exc, UNKNOWN if committing else NOT_APPLIED)) is not None:
            raise problem from exc
        raise


@asynccontextmanager
async def autocommit(once_sent: str = UNKNOWN) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements are each their own transaction: no BEGIN/COMMIT round trips.
    A lost connection is 503: nothing applied when no connection could be had, `once_sent` after
    (unknown by default: a hot path's statement may have run)."""
    try:
        conn = await get_engine().connect()
    except DATABASE_ERRORS as exc:
        if (problem := unavailable(exc, NOT_APPLIED)) is not None:
            raise problem from exc
        raise
    try:
        await conn.execution_options(isolation_level="AUTOCOMMIT")  # a flag on the connection: nothing sent
        yield conn
    except DATABASE_ERRORS as exc:
        if (problem := unavailable(exc, once_sent)) is not None:
            raise problem from exc
        raise
    finally:
        await conn.close()


async def autocommit_connection() -> AsyncIterator[AsyncConnection]:
    """For the hot paths, which are one statement each (a database function). Once the statement was
    sent the outcome is unknown (the hot paths take an Idempotency-Key, so a retry with it gets the
    one answer)."""
    async with autocommit() as conn:
        yield conn


async def read_connection() -> AsyncIterator[AsyncConnection]:
    """For a route that is one read: whatever breaks, nothing was applied."""
    async with autocommit(NOT_APPLIED) as conn:
        yield conn
