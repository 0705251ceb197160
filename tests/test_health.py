"""Liveness and readiness: the database, its migrations and Redis, and what a Redis outage degrades;
the engine's warm-up of new database connections."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import make_engine
from core.migrate import head_revision
from core.redis import get_redis
from core.sql_functions import SOURCES


def test_healthz_answers(http):
    r = http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_reports_database_migrations_functions_and_redis(http):
    r = http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "functions": "ok", "redis": "ok"},
    }


def test_a_function_that_differs_from_its_source_is_named_and_degrades_readiness(http, db):
    # A hand-made change (same meaning, other text) and a leftover function, as after a hotfix in psql.
    db.execute(
        "CREATE OR REPLACE FUNCTION utc_day(p_at timestamptz) RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE"
        " AS $$ SELECT (p_at AT TIME ZONE 'UTC')::date  -- hotfix\n$$"
    )
    db.execute("CREATE FUNCTION left_behind(n integer) RETURNS integer LANGUAGE sql AS 'SELECT n'")
    try:
        r = http.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "degraded"
        assert r.json()["checks"]["functions"] == (
            "drift: differs: utc_day(timestamp with time zone); unexpected: left_behind(integer)"
        )
    finally:
        db.execute("DROP FUNCTION left_behind")
        db.execute((SOURCES / "utc_day.sql").read_text())
    assert http.get("/readyz").json()["status"] == "ready"


def test_with_redis_down_the_service_is_degraded_but_checkins_still_work(world):
    m = world.merchant()
    venue = world.venue(m)
    world.campaign(m, [venue["id"]])
    state = get_redis()
    healthy = state.client
    # Connects lazily, so it binds to the server's event loop on first use, like the real client.
    state.client = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_timeout=0.05, socket_connect_timeout=0.05)
    try:
        r = world.http.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "degraded"
        assert body["checks"]["redis"].startswith("down: ")
        assert (body["checks"]["database"], body["checks"]["migrations"]) == ("ok", "ok")

        r = world.checkin(world.user(), *venue["center"], accuracy_m=5)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "accepted"
        assert len(r.json()["unlocked"]) == 1
    finally:
        state.client = healthy
    assert world.http.get("/readyz").json()["status"] == "ready"


def test_a_database_behind_the_code_is_unavailable(http, db):
    head = head_revision()
    db.execute("UPDATE alembic_version SET version_num = 'older'")
    try:
        r = http.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json() == {
            "status": "unavailable",
            "checks": {
                "database": "ok",
                "migrations": f"behind: at older, head is {head}",
                "functions": "ok",
                "redis": "ok",
            },
        }
    finally:
        db.execute("UPDATE alembic_version SET version_num = %s", (head,))
    assert http.get("/readyz").status_code == 200


def _st_dwithin_calls(db) -> int:
    row = db.execute(
        "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions WHERE funcname = 'st_dwithin'"
    ).fetchone()
    return int(row["n"])


def _open_connections(engine, count: int) -> None:
    async def run() -> None:
        async def one() -> None:
            async with engine.connect() as conn:
                await conn.scalar(text("SELECT 1"))
                await asyncio.sleep(0.05)  # held, so each of the `count` is a new connection

        await asyncio.gather(*(one() for _ in range(count)))
        await engine.dispose()  # the backends exit and flush their statistics

    asyncio.run(run())


def _wait_for_calls(db, expected: int) -> int:
    deadline = time.monotonic() + 10
    while (calls := _st_dwithin_calls(db)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return calls


def test_each_new_connection_runs_the_geography_warm_up(database_url, db):
    # Only these connections count function calls; the service's own do not.
    tracked = f"{database_url}?options={quote('-c track_functions=all')}"
    before = _st_dwithin_calls(db)

    _open_connections(create_async_engine(tracked), 2)  # without the listener: nothing
    time.sleep(0.3)
    assert _st_dwithin_calls(db) == before

    _open_connections(make_engine(tracked, pool_size=3), 3)
    assert _wait_for_calls(db, before + 3) == before + 3
