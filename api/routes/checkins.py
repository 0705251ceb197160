"""The app side: check in, see the wallet. Redemption at the till."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from api.deps import AppUser, HotConnection, MerchantAdmin, RedisDep, Session, SettingsDep, TillStaff, merchant_of
from api.problems import error_responses
from api.schemas import CheckinIn, CheckinOut, RedemptionIn, RedemptionOut, VoidIn, VoidOut, WalletOut
from core.errors import BadRequest, ValidationFailed
from offers import redemption
from offers.checkin import CheckinRequest, check_in
from offers.wallet import wallet

router = APIRouter(prefix="/v1", responses=error_responses(401, 403, 422, 429, 500))
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")


def _key_parameter(required: bool, purpose: str) -> dict:
    """The header as the contract states it. It is read by hand rather than declared, so that a
    missing key is the documented 400 `idempotency_key_required`, not a generic 422."""
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": required,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN.pattern},
                "description": f"1-200 printable ASCII characters, e.g. a UUID; {purpose}",
            }
        ]
    }


def _checked_key(request: Request, *, required: bool) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        if required:
            raise BadRequest(
                "send an Idempotency-Key header (e.g. a UUID) so a retry cannot check in twice",
                code="idempotency_key_required",
            )
        return None
    if not KEY_PATTERN.match(key):
        raise ValidationFailed.for_field(
            "Idempotency-Key", "invalid_idempotency_key", "1-200 printable ASCII characters"
        )
    return key


@router.post(
    "/checkins",
    status_code=201,
    response_model=CheckinOut,
    tags=["checkins"],
    responses=error_responses(400, 409),
    openapi_extra=_key_parameter(True, "reuse it on every retry of the same check-in"),
)
async def create_checkin(
    body: CheckinIn, principal: AppUser, conn: HotConnection, redis: RedisDep, settings: SettingsDep, request: Request
) -> Response:
    """Check in at a venue. Offers unlock only here, only for an accepted check-in.

    A rejected check-in is still 201 with status "rejected", its reason and the figures
    behind it; malformed input is 422. Repeat a request with the same Idempotency-Key and
    you get the same answer, never a second check-in."""
    key = _checked_key(request, required=True)
    body_json = await check_in(
        conn,
        redis,
        settings,
        user=principal.sub,
        key=key,
        req=CheckinRequest(**body.model_dump()),
        now=datetime.now(UTC),
    )
    return Response(body_json, status_code=201, media_type="application/json")


@router.get("/me/offers", response_model=WalletOut, tags=["checkins"])
async def my_offers(principal: AppUser, session: Session):
    return {"items": await wallet(session, principal.sub)}


@router.post(
    "/redemptions",
    status_code=201,
    response_model=RedemptionOut,
    tags=["redemptions"],
    responses=error_responses(404, 409, 410),
    openapi_extra=_key_parameter(False, "a retry with it returns the first answer"),
)
async def redeem(
    body: RedemptionIn,
    principal: TillStaff,
    conn: HotConnection,
    redis: RedisDep,
    settings: SettingsDep,
    request: Request,
):
    """Redeem a code at the till: exactly once. Unknown and other merchants' codes are both 404."""
    return await redemption.redeem_code(
        conn,
        redis,
        settings,
        merchant=merchant_of(principal),
        staff=principal.sub,
        raw_code=body.code,
        venue=body.venue_id,
        idempotency_key=_checked_key(request, required=False),
    )


@router.post(
    "/redemptions/{redemption_id}/void",
    response_model=VoidOut,
    tags=["redemptions"],
    responses=error_responses(404, 409),
)
async def void(
    redemption_id: uuid.UUID, body: VoidIn, principal: MerchantAdmin, conn: HotConnection, settings: SettingsDep
):
    """Undo a mistaken redemption within the void window; recorded, never erased."""
    return await redemption.void_redemption(
        conn,
        settings,
        merchant=merchant_of(principal),
        admin=principal.sub,
        redemption=redemption_id,
        reason=body.reason,
    )
