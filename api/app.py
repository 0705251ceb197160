"""The FastAPI application: routers, problem+json errors, body size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.limits import BodySizeLimit
from api.routes import campaigns, checkins, health, stats, venues
from core.db import get_engine
from core.redis import get_redis
from core.settings import get_settings

DESCRIPTION = """Location-based check-in offers. An offer is shown only at the moment of a real,
geofenced check-in, as a one-time code; a randomized holdout measures what each campaign really changes.

Every error is `application/problem+json` (RFC 9457) with a stable `code`."""


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await get_engine().dispose()
    await get_redis().client.aclose()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(title="checkin-offers", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    problems.install(app)
    for module in (health, venues, campaigns, checkins, stats):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
