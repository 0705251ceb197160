"""Redemption at the till, its void, and the list of what was redeemed."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import HotConnection, MerchantAdmin, RedisDep, Session, SettingsDep, TillStaff, merchant_of
from api.idempotency import key_parameter, optional_key
from api.problems import error_responses
from api.schemas import RedemptionIn, RedemptionOut, RedemptionPage, VoidIn, VoidOut
from core.keyset import DEFAULT_LIMIT, MAX_LIMIT
from geo import venues
from offers import redemption

router = APIRouter(prefix="/v1/redemptions", tags=["redemptions"], responses=error_responses(401, 403, 422, 429, 500))


@router.post(
    "",
    status_code=201,
    response_model=RedemptionOut,
    responses=error_responses(404, 409, 410),
    openapi_extra=key_parameter(False, "a retry with it returns the first answer"),
)
async def redeem(
    body: RedemptionIn,
    principal: TillStaff,
    conn: HotConnection,
    redis: RedisDep,
    settings: SettingsDep,
    request: Request,
) -> dict[str, Any]:
    """Redeem a code at the till: exactly once. Unknown and other merchants' codes are both 404.
    The receipt names the offer's title and terms, so the till shows what it gives. After a few
    404s a staff member waits a growing delay (429 with `Retry-After`, the remaining wait in
    seconds); colleagues are not held back, unless the merchant's much higher ceiling is reached."""
    outcome = await redemption.redeem(
        conn,
        redis,
        settings,
        merchant=merchant_of(principal),
        staff=principal.sub,
        raw_code=body.code,
        venue=body.venue_id,
        idempotency_key=optional_key(request),
    )
    return outcome.receipt


@router.post("/{redemption_id}/void", response_model=VoidOut, responses=error_responses(404, 409))
async def void(
    redemption_id: uuid.UUID, body: VoidIn, principal: MerchantAdmin, conn: HotConnection, settings: SettingsDep
) -> dict[str, Any]:
    """Undo a mistaken redemption within the void window; recorded, never erased."""
    return await redemption.void_redemption(
        conn,
        settings,
        merchant=merchant_of(principal),
        admin=principal,
        redemption=redemption_id,
        reason=body.reason,
    )


@router.get("", response_model=RedemptionPage, responses=error_responses(404))
async def list_redemptions(
    principal: TillStaff,
    session: Session,
    settings: SettingsDep,
    venue_id: Annotated[uuid.UUID | None, Query(description="only this venue; another merchant's venue is 404")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """The merchant's redemptions, newest first, a page at a time (`next_cursor` as in the wallet),
    voided ones included, each saying whether it can still be voided. Codes are masked but for
    their last 4 characters."""
    merchant = merchant_of(principal)
    if venue_id is not None:
        await venues.get_venue(session, merchant, venue_id)
    return await redemption.redemptions_page(
        await session.connection(), settings, merchant=merchant, venue=venue_id, cursor=cursor, limit=limit
    )
