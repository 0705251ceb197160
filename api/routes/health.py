"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from core.db import get_engine
from core.migrate import head_revision
from core.redis import get_redis

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


async def _database() -> str:
    try:
        async with asyncio.timeout(2), get_engine().connect() as conn:
            current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
        return f"down: {type(exc).__name__}"
    return "ok" if current == head_revision() else f"migrations behind: at {current}, head is {head_revision()}"


async def _redis() -> str:
    try:
        async with asyncio.timeout(1):
            await get_redis().client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"down: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", responses={503: {"description": "the database is down or not migrated"}})
async def readyz() -> JSONResponse:
    """Database reachable and migrated (else 503); Redis reachable (else 200 "degraded":
    check-ins keep working from PostgreSQL alone, without rate limits)."""
    database, redis = await asyncio.gather(_database(), _redis())
    status = "ready" if database == "ok" and redis == "ok" else "degraded" if database == "ok" else "unavailable"
    return JSONResponse({"status": status, "checks": {"database": database, "redis": redis}},
                        status_code=503 if status == "unavailable" else 200)
