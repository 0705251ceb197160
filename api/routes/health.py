"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api.deps import SettingsDep
from core import metrics
from core.db import get_engine
from core.errors import Unauthorized
from core.migrate import head_revision
from core.redis import get_redis
from core.settings import get_settings
from core.sql_functions import function_drift

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:  # not dict[str, str]: that would change openapi.json
    """The process answers."""
    return {"status": "ok"}


async def _database() -> tuple[str, str]:
    """(database, migrations): reachable, and at the code's head revision."""
    try:
        async with asyncio.timeout(2), get_engine().connect() as conn:
            migrated = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            current = await conn.scalar(text("SELECT version_num FROM alembic_version")) if migrated else None
    except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
        return f"down: {type(exc).__name__}", "unknown"
    head = head_revision()
    return "ok", "ok" if current == head else f"behind: at {current or 'none'}, head is {head}"


async def _redis() -> str:
    try:
        async with asyncio.timeout(1):
            await get_redis().client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"down: {type(exc).__name__}"
    return "ok"


async def _functions() -> str:
    """The database's functions and triggers as the source files define them; else which differ."""
    try:
        async with asyncio.timeout(5):
            drift = await asyncio.to_thread(function_drift, get_settings().database_url)
    except Exception as exc:  # noqa: BLE001 - readiness reports, never crashes
        return f"unknown: {type(exc).__name__}"
    return f"drift: {drift}" if drift else "ok"


@router.get("/readyz", responses={503: {"description": "the database is down or not migrated"}})
async def readyz() -> JSONResponse:
    """Database reachable and migrated to head (else 503 "unavailable"); Redis reachable and the
    database's functions as the source files define them (else 200 "degraded": check-ins keep
    working from PostgreSQL alone, without rate limits; a drifted function is named so that an
    operator can reinstall it)."""
    (database, migrations), redis, functions = await asyncio.gather(_database(), _redis(), _functions())
    serving = database == "ok" and migrations == "ok"
    status = "unavailable" if not serving else "ready" if redis == functions == "ok" else "degraded"
    checks = {"database": database, "migrations": migrations, "functions": functions, "redis": redis}
    return JSONResponse(
        {"status": status, "checks": checks},
        status_code=503 if status == "unavailable" else 200,
        headers={"Retry-After": "2"} if status == "unavailable" else None,
    )


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, settings: SettingsDep) -> Response:
    """The Prometheus text format, for a scraper that sends `Authorization: Bearer <CHECKIN_METRICS_TOKEN>`.
    Without the setting the page does not exist (404, as any unknown path); a wrong or missing token is 401."""
    expected = settings.metrics_token
    if expected is None:
        raise HTTPException(404)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("send Authorization: Bearer <CHECKIN_METRICS_TOKEN>", code="invalid_metrics_token")
    metrics.sample_resources()
    return Response(await run_in_threadpool(metrics.exposition), media_type=CONTENT_TYPE_PLAIN_0_0_4)
