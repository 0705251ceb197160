"""The console's router, templates and the pages every section shares."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from api.console.session import ConsoleUser, CsrfRefused, SignInRequired
from core.auth import Principal
from core.errors import NotFound
from core.settings import get_settings
from geo import venues
from geo.venues import Venue

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/dashboard", include_in_schema=False)


def render(
    request: Request, template: str, principal: Principal | None = None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page: the template with the signed-in user, their CSRF token and the map settings."""
    return templates.TemplateResponse(
        request,
        template,
        {
            "principal": principal,
            "csrf_token": getattr(request.state, "csrf_token", ""),
            "map_tile_url": get_settings().map_tile_url,
            **context,
        },
        status_code=status_code,
    )


def parse_id(raw: object) -> uuid.UUID | None:
    """An id from a path, form field or cookie; None when it is not one."""
    try:
        return uuid.UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


async def own_venue(session: AsyncSession, principal: Principal, raw_id: object) -> Venue | None:
    """The caller's venue, or None for a malformed id, a missing venue or another merchant's."""
    venue_id = parse_id(raw_id)
    if venue_id is None or principal.merchant_id is None:
        return None
    try:
        return await venues.get_venue(session, principal.merchant_id, venue_id)
    except NotFound:
        return None


def not_found(request: Request, principal: Principal) -> HTMLResponse:
    """Missing and another merchant's ids answer the same page."""
    return render(request, "not_found.html", principal, status_code=404)


def forbidden(request: Request, principal: Principal) -> HTMLResponse:
    """A page this role does not use (a marketer at the till, staff on campaigns)."""
    return render(request, "forbidden.html", principal, status_code=403)


@router.get("/")
async def home(principal: ConsoleUser) -> Response:
    return RedirectResponse("/dashboard/till" if principal.role == "merchant_staff" else "/dashboard/campaigns", 303)


def install(app: FastAPI) -> None:
    """Static assets, the console's routes and its two answers that are not pages."""
    app.mount("/static", StaticFiles(directory=HERE.parent / "static"), name="static")
    app.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    from api.console import (  # here: they import render()
        audit,
        campaign_results,
        campaigns,
        conversations,
        sign_in,
        till,
        venues,
        webhooks,
    )

    app.include_router(sign_in.router)
    app.include_router(venues.router)
    app.include_router(campaign_results.router)
    app.include_router(campaigns.router)
    app.include_router(till.router)
    app.include_router(conversations.router)
    app.include_router(webhooks.router)
    app.include_router(audit.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        return RedirectResponse("/dashboard/sign-in", 303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return render(request, "csrf_refused.html", status_code=403)

    @app.get("/", include_in_schema=False)
    async def _root() -> Response:
        return RedirectResponse("/dashboard/", 303)
