"""Which role to call an API operation as, read off the route's own dependencies (api/deps.py), so
tests that call every operation need no list of roles to keep up to date."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.deps import auth_requirement

MERCHANT_ROLES = ("merchant_admin", "merchant_staff", "marketer")
# The first role a route admits, in this order: the admin can do the most of a merchant's work.
PREFERRED = (*MERCHANT_ROLES, "app_user", "platform_admin")


def app_routes(app: FastAPI, routes: list[Any] | None = None) -> Iterator[Any]:
    """The app's routes, through the routers it includes (all are included without a prefix)."""
    for route in app.routes if routes is None else routes:
        if hasattr(route, "original_router"):
            yield from app_routes(app, route.original_router.routes)
        elif hasattr(route, "methods"):
            yield route


def role_for(app: FastAPI, method: str, path: str) -> str | None:
    """The role to call `method path` (the OpenAPI path template) as; None for a public route."""
    for route in app_routes(app):
        if isinstance(route, APIRoute) and route.path == path and method.upper() in route.methods:
            requirement = auth_requirement(route.dependant)
            if requirement is None:
                return None
            return next(role for role in PREFERRED if all(role in roles for roles in requirement))
    raise LookupError(f"the app has no route {method.upper()} {path}")
