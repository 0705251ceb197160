"""Dependencies: the request's transaction, the authenticated principal and role checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import ProblemHTTPException
from core.auth import Principal, Role, remembered_principal, verify_token
from core.db import autocommit_connection, read_connection, transaction
from core.errors import Forbidden, ProblemError, Unauthorized
from core.redis import RedisState, get_redis
from core.settings import Settings, get_settings

# scope="function": the commit happens before the response is sent, so a 2xx is durable.
Session = Annotated[AsyncSession, Depends(transaction, scope="function")]
HotConnection = Annotated[AsyncConnection, Depends(autocommit_connection, scope="function")]
# One read on its own connection: autocommit spares it BEGIN and COMMIT and the ORM session.
ReadConnection = Annotated[AsyncConnection, Depends(read_connection, scope="function")]


# Dependencies are coroutines: FastAPI runs plain functions in a thread pool, a thread hop
# per dependency per request for work that never blocks.
async def _settings() -> Settings:
    return get_settings()


async def _redis() -> RedisState:
    return get_redis()


# The request-state key under which AuthenticateBeforeBody keeps the verified principal.
PRINCIPAL = "principal"

SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[RedisState, Depends(_redis)]


async def authenticate(headers: Headers, settings: Settings) -> Principal:
    """The principal of a request's bearer token; 401 when it is missing or invalid."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>", code="missing_token")
    token = token.strip()
    if settings.jwks_url:  # a key-set refresh is network I/O: keep it off the event loop, unless verified already
        remembered = remembered_principal(token, settings)
        return remembered if remembered is not None else await run_in_threadpool(verify_token, token, settings)
    return verify_token(token, settings)


def check_role(principal: Principal, allowed: frozenset[Role]) -> None:
    if principal.role not in allowed:
        raise Forbidden(f"this needs one of the roles: {', '.join(sorted(allowed))}", code="forbidden_role")


async def current_principal(request: Request) -> Principal:
    """The principal AuthenticateBeforeBody verified for this request, else (a route it does not wrap) verified here."""
    verified: Principal | None = request.scope.get("state", {}).get(PRINCIPAL)
    if verified is None:
        verified = await authenticate(request.headers, get_settings())
        request.scope.setdefault("state", {})[PRINCIPAL] = verified  # the request's log line names its merchant
    return verified


class RoleCheck:
    """The dependency `require(...)` makes; a class, so AuthenticateBeforeBody can read the roles off a route."""

    def __init__(self, roles: Iterable[Role]) -> None:
        self.roles = frozenset(roles)

    # The request itself, not a sub-dependency on current_principal: one dependency less for FastAPI
    # to resolve on every authenticated request.
    async def __call__(self, request: Request) -> Principal:
        principal = await current_principal(request)
        check_role(principal, self.roles)
        return principal


def require(*roles: Role) -> RoleCheck:
    return RoleCheck(roles)


class AuthenticateBeforeBody:
    """401 (missing or invalid token) and 403 (wrong role) before an authenticated route reads its body.

    FastAPI reads and decodes the body before it solves any dependency, so an anonymous caller would
    get a body's 422 (and learn the schema) instead of 401. This middleware wraps `receive`: by the
    time the route reads its body, routing has put the route in the scope, and its dependency tree
    says whether it authenticates and which roles it admits. The principal is verified there, once,
    and kept in the request's state for `current_principal`. Routes without a body authenticate in
    their dependency, as before; public routes read their body untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # id(route) -> (route, requirement); the route is kept to tell a reused id from the same route.
        self._requirements: dict[int, tuple[object, list[frozenset[Role]] | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        checked = False

        async def authenticated_receive() -> Message:
            nonlocal checked
            if not checked:
                checked = True
                await self._authenticate(scope)
            return await receive()

        await self.app(scope, authenticated_receive, send)

    async def _authenticate(self, scope: Scope) -> None:
        route = scope.get("route")
        if not isinstance(route, APIRoute):
            return
        cached = self._requirements.get(id(route))
        if cached is None or cached[0] is not route:
            cached = self._requirements[id(route)] = (route, auth_requirement(route.dependant))
        requirement = cached[1]
        if requirement is None:
            return
        try:
            principal = await authenticate(Headers(scope=scope), get_settings())
            for roles in requirement:
                check_role(principal, roles)
        except ProblemError as exc:
            # Raised inside FastAPI's body reading, where only an HTTPException gets through.
            raise ProblemHTTPException(exc) from None
        scope.setdefault("state", {})[PRINCIPAL] = principal


def auth_requirement(dependant: Dependant) -> list[frozenset[Role]] | None:
    """None when nothing in a route's dependency tree authenticates, else the role sets it requires
    (an empty list: any authenticated principal)."""
    authenticated, role_sets = False, []
    pending = [dependant]
    while pending:
        for sub in pending.pop().dependencies:
            if sub.call is current_principal:
                authenticated = True
            if isinstance(sub.call, RoleCheck):
                authenticated = True
                role_sets.append(sub.call.roles)
            pending.append(sub)
    return role_sets if authenticated else None


def merchant_of(principal: Principal) -> uuid.UUID:
    assert principal.merchant_id is not None  # guaranteed for merchant roles by verify_token
    return principal.merchant_id


AppUser = Annotated[Principal, Depends(require(Role.APP_USER))]
PlatformAdmin = Annotated[Principal, Depends(require(Role.PLATFORM_ADMIN))]
MerchantAdmin = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN))]
MerchantReader = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN, Role.MERCHANT_STAFF, Role.MARKETER))]
TillStaff = Annotated[Principal, Depends(require(Role.MERCHANT_STAFF, Role.MERCHANT_ADMIN))]
StatsReader = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN, Role.MARKETER))]
