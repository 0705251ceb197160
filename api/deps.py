"""Dependencies: the request's transaction, the authenticated principal and role checks."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.concurrency import run_in_threadpool

from core.auth import Principal, Role, verify_token
from core.db import autocommit_connection, transaction
from core.errors import Forbidden, Unauthorized
from core.redis import RedisState, get_redis
from core.settings import Settings, get_settings

# scope="function": the commit happens before the response is sent, so a 2xx is durable.
Session = Annotated[AsyncSession, Depends(transaction, scope="function")]
HotConnection = Annotated[AsyncConnection, Depends(autocommit_connection, scope="function")]


# Dependencies are coroutines: FastAPI runs plain functions in a thread pool, a thread hop
# per dependency per request for work that never blocks.
async def _settings() -> Settings:
    return get_settings()


async def _redis() -> RedisState:
    return get_redis()


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[RedisState, Depends(_redis)]


async def current_principal(request: Request, settings: SettingsDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>", code="missing_token")
    if settings.jwks_url:  # a key-set refresh is network I/O: keep it off the event loop
        return await run_in_threadpool(verify_token, token.strip(), settings)
    return verify_token(token.strip(), settings)


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    allowed = set(roles)

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(allowed))}", code="forbidden_role")
        return principal

    return check


def merchant_of(principal: Principal) -> uuid.UUID:
    assert principal.merchant_id is not None  # guaranteed for merchant roles by verify_token
    return principal.merchant_id


AppUser = Annotated[Principal, Depends(require(Role.APP_USER))]
PlatformAdmin = Annotated[Principal, Depends(require(Role.PLATFORM_ADMIN))]
MerchantAdmin = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN))]
MerchantReader = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN, Role.MERCHANT_STAFF, Role.MARKETER))]
TillStaff = Annotated[Principal, Depends(require(Role.MERCHANT_STAFF, Role.MERCHANT_ADMIN))]
StatsReader = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN, Role.MARKETER))]
