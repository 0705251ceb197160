"""One offer: read it, change its texts, schedule, status or budget (what may change when is
decided in offers.campaigns.update_offer)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api import audited
from api.deps import MerchantAdmin, MerchantReader, Session, merchant_of
from api.problems import error_responses
from api.routes.campaigns import offer_out
from api.schemas import OfferOut, OfferPatch
from core.errors import ValidationFailed
from offers import campaigns

router = APIRouter(prefix="/v1/offers", tags=["campaigns"], responses=error_responses(401, 403, 404, 422, 500))
NULLABLE = {"schedule"}  # null means "any day, any time"; every other field needs a value


@router.get("/{offer_id}", response_model=OfferOut)
async def get_offer(offer_id: uuid.UUID, principal: MerchantReader, session: Session) -> OfferOut:
    offer = await campaigns.get_offer(session, merchant_of(principal), offer_id)
    return offer_out(offer, await campaigns.offer_remaining(session, [offer.id]))


@router.patch("/{offer_id}", response_model=OfferOut, responses=error_responses(409))
async def update_offer(offer_id: uuid.UUID, body: OfferPatch, principal: MerchantAdmin, session: Session) -> OfferOut:
    """Texts, schedule and status any time; rule, per_user_limit and redeem_within_minutes only
    until the campaign has been active, total_limit after that only upwards; a retired offer
    only its texts."""
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    nulls = sorted(field for field, value in changes.items() if value is None and field not in NULLABLE)
    if nulls:
        raise ValidationFailed.for_field(nulls[0], "null_not_allowed", f"{nulls[0]} cannot be null")
    offer = await audited.update_offer(session, principal, offer_id, changes)
    return offer_out(offer, await campaigns.offer_remaining(session, [offer.id]))
