"""The FastAPI application: routers, problem+json errors, body size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api import problems
from api.limits import BodySizeLimit
from api.routes import campaigns, checkins, health, stats, venues
from core.db import get_engine
from core.idempotency import purge_forever
from core.redis import get_redis
from core.settings import get_settings

DESCRIPTION = """Location-based check-in offers. An offer is shown only at the moment of a real,
geofenced check-in, as a one-time code; a randomized holdout measures what each campaign really changes.

Every error is `application/problem+json` (RFC 9457) with a stable `code`."""


def _operation_id(route: APIRoute) -> str:
    # The handler's name: short, stable operationIds make readable methods in generated clients.
    return route.name


def _openapi_document(app: FastAPI) -> dict:
    """FastAPI's document plus what generated clients need: the bearer scheme on every operation
    that can answer 401, and the problem+json body as one named schema instead of a copy per response."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = problems.PROBLEM_SCHEMA
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    for path_item in document["paths"].values():
        for operation in path_item.values():
            responses = operation["responses"]
            if "401" in responses:
                operation["security"] = [{"bearer": []}]
            for response in responses.values():
                problem = response.get("content", {}).get(problems.PROBLEM_JSON)
                if problem is not None:
                    problem["schema"] = {"$ref": "#/components/schemas/Problem"}
    app.openapi_schema = document
    return document


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    purge = asyncio.create_task(purge_forever(get_engine(), get_settings().idempotency_ttl_s))
    yield
    purge.cancel()
    await get_engine().dispose()
    await get_redis().client.aclose()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="checkin-offers",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.openapi = lambda: _openapi_document(app)
    problems.install(app)
    for module in (health, venues, campaigns, checkins, stats):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
