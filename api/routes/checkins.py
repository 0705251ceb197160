"""The app side: check in, see the wallet; the merchant side: review the check-ins at its venues."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from api.deps import AppUser, MerchantAdmin, Session, SettingsDep, merchant_of
from api.idempotency import key_parameter, required_key
from api.problems import error_responses
from api.schemas import CheckinIn, CheckinOut, CheckinReviewPage, WalletOut
from core import metrics
from core.db import autocommit
from core.keyset import DEFAULT_LIMIT, MAX_LIMIT
from core.redis import get_redis
from core.settings import get_settings
from geo import venues
from geo.checkins import checkin_review_page
from offers import wallet
from offers.checkin import CheckinRequest, check_in

router = APIRouter(prefix="/v1", responses=error_responses(401, 403, 422, 429, 500))


@router.post(
    "/checkins",
    status_code=201,
    response_model=CheckinOut,
    tags=["checkins"],
    responses=error_responses(400, 409),
    openapi_extra=key_parameter(True, "reuse it on every retry of the same check-in"),
)
async def create_checkin(body: CheckinIn, principal: AppUser, request: Request) -> Response:
    """Check in at a venue. Offers unlock only here, only for an accepted check-in.

    A rejected check-in is still 201 with status "rejected", its reason and the figures
    behind it; malformed input is 422. Repeat a request with the same Idempotency-Key and
    you get the same answer, never a second check-in."""
    key = required_key(request, "so a retry cannot check in twice")
    # Connection, Redis and settings taken here, not as dependencies: FastAPI resolves each
    # dependency on every request, and this is the hottest route.
    async with autocommit() as conn:
        outcome = await check_in(
            conn,
            get_redis(),
            get_settings(),
            user=principal.sub,
            key=key,
            req=CheckinRequest(**body.model_dump()),
            now=datetime.now(UTC),
        )
    metrics.count_checkin(
        status=outcome.status, reason=outcome.reason, unlocks=outcome.unlocks, replayed=outcome.replayed
    )
    return Response(outcome.body, status_code=201, media_type="application/json")


@router.get("/me/offers", response_model=WalletOut, tags=["checkins"])
async def my_offers(
    principal: AppUser,
    session: Session,
    limit: Annotated[
        int, Query(ge=1, le=wallet.MAX_LIMIT, description=f"page size, at most {wallet.MAX_LIMIT}")
    ] = wallet.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """The caller's unlocked offers with their state now, newest first, a page at a time.

    Follow `next_cursor` (pass it as `?cursor=`) until it is null. The cursor is opaque and
    stays valid: offers unlocked while you page never repeat or shift an offer already seen
    (they appear on a fresh first page). A cursor this endpoint did not make is 422
    `invalid_cursor`."""
    return await wallet.wallet_page(session, principal.sub, cursor=cursor, limit=limit)


@router.get("/checkins", response_model=CheckinReviewPage, tags=["checkins"], responses=error_responses(404))
async def review_checkins(
    principal: MerchantAdmin,
    session: Session,
    settings: SettingsDep,
    venue_id: Annotated[uuid.UUID | None, Query(description="one venue; another merchant's venue is 404")] = None,
    status: Annotated[Literal["accepted", "rejected"] | None, Query(description="one outcome only")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Check-ins at the merchant's venues (one venue, or all), newest first, for fraud review: when,
    the outcome and why, the figures behind it, the reported accuracy and the distance from the
    fix to the venue's fence. Never the position: the distance and the accuracy decide a check-in,
    and where customers were is none of the merchant's business. The customer appears as their
    pseudonym for this merchant (the one the conversations show), never as who they are, so one
    customer's repeated rejections can be told apart. A check-in that matched no venue is nobody's
    and never listed."""
    merchant = merchant_of(principal)
    if venue_id is not None:
        await venues.get_venue(session, merchant, venue_id)
    return await checkin_review_page(
        session, settings, merchant, venue_id=venue_id, status=status, cursor=cursor, limit=limit
    )
