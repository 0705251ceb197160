"""Redemption at the till, and its void."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from api.deps import HotConnection, MerchantAdmin, RedisDep, SettingsDep, TillStaff, merchant_of
from api.idempotency import key_parameter, optional_key
from api.problems import error_responses
from api.schemas import RedemptionIn, RedemptionOut, VoidIn, VoidOut
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
    """Redeem a code at the till: exactly once. Unknown and other merchants' codes are both 404."""
    return await redemption.redeem_code(
        conn,
        redis,
        settings,
        merchant=merchant_of(principal),
        staff=principal.sub,
        raw_code=body.code,
        venue=body.venue_id,
        idempotency_key=optional_key(request),
    )


@router.post("/{redemption_id}/void", response_model=VoidOut, responses=error_responses(404, 409))
async def void(
    redemption_id: uuid.UUID, body: VoidIn, principal: MerchantAdmin, conn: HotConnection, settings: SettingsDep
) -> dict[str, Any]:
    """Undo a mistaken redemption within the void window; recorded, never erased."""
    return await redemption.void_redemption(
        conn,
        settings,
        merchant=merchant_of(principal),
        admin=principal.sub,
        redemption=redemption_id,
        reason=body.reason,
    )
