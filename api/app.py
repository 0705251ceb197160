"""The FastAPI application: routers, problem+json errors, body size limit, the console and the
API docs, all served from this process with no asset from the internet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from api import problems
from api.console import pages as console
from api.deps import AuthenticateBeforeBody
from api.limits import BodySizeLimit, HeaderSizeLimit
from api.observability import ObserveRequests
from api.routes import (
    audit,
    campaigns,
    checkins,
    codes,
    conversations,
    health,
    me,
    merchants,
    offers,
    privacy,
    redemptions,
    stats,
    venues,
    webhooks,
)
from core import metrics
from core.db import get_engine
from core.idempotency import purge_forever
from core.redis import get_redis
from core.settings import get_settings
from offers.privacy import retention
from offers.webhooks.worker import lead_when_possible

DESCRIPTION = """Location-based check-in offers. An offer is shown only at the moment of a real,
geofenced check-in, as a one-time code; a randomized holdout measures what each campaign really changes.

Every error is `application/problem+json` (RFC 9457) with a stable `code`."""


# The limits (api/limits.py) answer these before any route runs: 431 for a request head over
# CHECKIN_MAX_HEADER_BYTES; for a body, 413 over CHECKIN_MAX_BODY_BYTES and 400 when it cannot be
# decoded at all (FastAPI's answer to a body that is not UTF-8). 503 `database_unavailable` (with
# Retry-After) when PostgreSQL cannot be reached.
ALWAYS_POSSIBLE = (431, 503)
WITH_A_BODY = (400, 413)
RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
}


def _operation_id(route: APIRoute) -> str:
    # The handler's name: short, stable operationIds make readable methods in generated clients.
    return route.name


class CheckinOffersAPI(FastAPI):
    """FastAPI with the document extended for generated clients, as a typed override of
    `openapi()` (the pattern of assigning a function to `app.openapi` is an untyped method swap)."""

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document plus what generated clients need: the bearer scheme on every operation
        that can answer 401, the errors every operation can answer whatever its route says (431 for
        any request; 400 and 413 with a body; 503), Retry-After on every 429 and 503, and the problem+json body as
        one named schema instead of a copy per response."""
        if self.openapi_schema:
            return self.openapi_schema
        document = get_openapi(title=self.title, version=self.version, description=self.description, routes=self.routes)
        components = document.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = problems.PROBLEM_SCHEMA
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        for path_item in document["paths"].values():
            for operation in path_item.values():
                responses = operation["responses"]
                for status, response in problems.error_responses(
                    *ALWAYS_POSSIBLE, *(WITH_A_BODY if "requestBody" in operation else ())
                ).items():
                    responses.setdefault(str(status), response)
                for status in ("429", "503"):
                    if status in responses:
                        responses[status]["headers"] = {"Retry-After": RETRY_AFTER}
                if "401" in responses:
                    operation["security"] = [{"bearer": []}]
                for response in responses.values():
                    problem = response.get("content", {}).get(problems.PROBLEM_JSON)
                    if problem is not None:
                        problem["schema"] = {"$ref": "#/components/schemas/Problem"}
        self.openapi_schema = document
        return document

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's outermost layer, the one that renders an unhandled error as a 500:
        # ObserveRequests then sees that 500 too, and the 500 handler runs with the request id set.
        return ObserveRequests(super().build_middleware_stack())


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    purge = asyncio.create_task(purge_forever(get_engine(), get_settings().idempotency_ttl_s))
    # One process at a time leads the webhook worker (an advisory lock): see offers/webhooks/worker.py.
    delivering = asyncio.create_task(lead_when_possible(get_settings())) if get_settings().webhook_worker else None
    # Under several workers each writes its pool and Redis gauges for scrapes another one answers.
    sampling = asyncio.create_task(metrics.sample_forever()) if metrics.MULTIPROCESS_DIR else None
    # Location retention, one process at a time: see offers/privacy/retention.py.
    purging = asyncio.create_task(retention.purge_forever(get_settings())) if get_settings().privacy_purge else None
    yield
    purge.cancel()
    if delivering is not None:
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)  # its connection closed: the lock is free
    if sampling is not None:
        sampling.cancel()
    if purging is not None:
        purging.cancel()
        await asyncio.gather(purging, return_exceptions=True)  # its connection closed: the lock is free
    metrics.forget_this_process()
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
        docs_url=None,  # served below from vendored assets: FastAPI's defaults load them from a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_served else None,  # CHECKIN_PUBLIC_DOCS
    )
    problems.install(app)
    for module in (
        health,
        venues,
        merchants,
        campaigns,
        offers,
        checkins,
        redemptions,
        codes,
        stats,
        conversations,
        webhooks,
        me,
        privacy,
        audit,
    ):
        app.include_router(module.router)
    console.install(app)
    if settings.docs_served:
        _install_docs(app)
    app.add_middleware(AuthenticateBeforeBody)  # inside the size limits: 401/403 before a body is read
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeaderSizeLimit, max_bytes=settings.max_header_bytes)  # the first of these to run
    return app


def _install_docs(app: FastAPI) -> None:
    vendor = "/static/vendor"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="checkin-offers API",
            swagger_js_url=f"{vendor}/swagger-ui-5.18.2/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui-5.18.2/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="checkin-offers API",
            redoc_js_url=f"{vendor}/redoc-2.4.0/redoc.standalone.js",
            redoc_favicon_url="data:,",
            with_google_fonts=False,
        )
