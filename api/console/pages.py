"""The console's router, templates and the pages every section shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.console.session import ConsoleUser, CsrfRefused, SignInRequired
from core.auth import Principal
from core.settings import get_settings

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
    from api.console import campaign_results, campaigns, sign_in, till, venues  # here: they import render()

    app.include_router(sign_in.router)
    app.include_router(venues.router)
    app.include_router(campaign_results.router)
    app.include_router(campaigns.router)
    app.include_router(till.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        return RedirectResponse("/dashboard/sign-in", 303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return render(request, "csrf_refused.html", status_code=403)

    @app.get("/", include_in_schema=False)
    async def _root() -> Response:
        return RedirectResponse("/dashboard/", 303)
