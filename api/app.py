"""The FastAPI application: routers, problem+json errors, body size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api import problems
from api.limits import BodySizeLimit
from api.routes import campaigns, checkins, health, redemptions, stats, venues
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


class CheckinOffersAPI(FastAPI):
    """FastAPI with the document extended for generated clients, as a typed override of
    `openapi()` (the pattern of assigning a function to `app.openapi` is an untyped method swap)."""

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document plus what generated clients need: the bearer scheme on every operation
        that can answer 401, and the problem+json body as one named schema instead of a copy per response."""
        if self.openapi_schema:
            return self.openapi_schema
        document = get_openapi(title=self.title, version=self.version, description=self.description, routes=self.routes)
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
        self.openapi_schema = document
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
    app = CheckinOffersAPI(
        title="checkin-offers",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    problems.install(app)
    for module in (health, venues, campaigns, checkins, redemptions, stats):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
