"""Campaigns and offers: the merchant side."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api import audited
from api.deps import MerchantAdmin, MerchantReader, Session, merchant_of
from api.problems import error_responses
from api.schemas import CampaignIn, CampaignOut, CampaignPatch, OfferIn, OfferOut, Page
from core.errors import ValidationFailed
from core.keyset import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page_of
from offers import campaigns

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=error_responses(401, 403, 422, 500))


def _out(campaign: campaigns.Campaign, remaining: dict[uuid.UUID, int]) -> CampaignOut:
    out = CampaignOut.model_validate(campaign)
    for offer in out.offers:
        offer.remaining = remaining.get(offer.id, 0)
    return out


async def _one(session: AsyncSession, campaign: campaigns.Campaign) -> CampaignOut:
    return _out(campaign, await campaigns.offer_remaining(session, [o.id for o in campaign.offers]))


@router.post("", status_code=201, response_model=CampaignOut)
async def create_campaign(body: CampaignIn, principal: MerchantAdmin, session: Session) -> CampaignOut:
    campaign = await audited.create_campaign(session, principal, **body.model_dump())
    return await _one(session, campaign)


@router.get("", response_model=Page[CampaignOut])
async def list_campaigns(
    principal: MerchantReader,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: uuid.UUID | None = None,
) -> dict[str, Any]:
    items = await campaigns.list_campaigns(session, merchant_of(principal), after=cursor, limit=limit)
    # The budgets of every offer on the page in one query, not one per campaign.
    remaining = await campaigns.offer_remaining(session, [o.id for c in items for o in c.offers])
    return {
        "items": [_out(c, remaining) for c in items],
        "next_cursor": str(items[-1].id) if len(items) == limit else None,
    }


@router.get("/{campaign_id}", response_model=CampaignOut, responses=error_responses(404))
async def get_campaign(campaign_id: uuid.UUID, principal: MerchantReader, session: Session) -> CampaignOut:
    return await _one(session, await campaigns.get_campaign(session, merchant_of(principal), campaign_id))


@router.delete("/{campaign_id}", status_code=204, responses=error_responses(404, 409))
async def delete_campaign(campaign_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> Response:
    """Delete a draft with its offers; any other campaign is 409 campaign_not_draft (end it instead)."""
    await audited.delete_campaign(session, principal, campaign_id)
    return Response(status_code=204)


@router.patch("/{campaign_id}", response_model=CampaignOut, responses=error_responses(404, 409))
async def update_campaign(
    campaign_id: uuid.UUID, body: CampaignPatch, principal: MerchantAdmin, session: Session
) -> CampaignOut:
    changes = body.model_dump(exclude_unset=True)
    nulls = [field for field, value in changes.items() if value is None]
    if nulls:
        raise ValidationFailed.for_field(nulls[0], "null_not_allowed", f"{nulls[0]} cannot be null")
    campaign = await audited.update_campaign(session, principal, campaign_id, changes)
    return await _one(session, campaign)


@router.post("/{campaign_id}/offers", status_code=201, response_model=OfferOut, responses=error_responses(404, 409))
async def add_offer(campaign_id: uuid.UUID, body: OfferIn, principal: MerchantAdmin, session: Session) -> OfferOut:
    offer = await audited.add_offer(
        session,
        principal,
        campaign_id,
        **body.model_dump(exclude={"rule", "schedule"}),
        rule=body.rule,
        schedule=body.schedule,
    )
    return offer_out(offer, await campaigns.offer_remaining(session, [offer.id]))


@router.get("/{campaign_id}/offers", response_model=Page[OfferOut], responses=error_responses(404))
async def list_offers(
    campaign_id: uuid.UUID,
    principal: MerchantReader,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The campaign's offers in the order they were added (the order a check-in tries them), with
    their status and budget left."""
    after = decode_cursor(cursor) if cursor is not None else None
    found = await campaigns.list_offers(session, merchant_of(principal), campaign_id, after=after, limit=limit)
    page = page_of(found, limit, lambda offer: (offer.created_at, offer.id))
    remaining = await campaigns.offer_remaining(session, [o.id for o in page["items"]])
    return page | {"items": [offer_out(o, remaining) for o in page["items"]]}


def offer_out(offer: campaigns.Offer, remaining: dict[uuid.UUID, int]) -> OfferOut:
    out = OfferOut.model_validate(offer)
    out.remaining = remaining.get(offer.id, 0)
    return out


# The three transitions: one handler each, so each has its own name, operationId and summary.
@router.post(
    "/{campaign_id}/activate",
    response_model=CampaignOut,
    responses=error_responses(404, 409),
    summary="Activate a campaign",
)
async def activate_campaign(campaign_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> CampaignOut:
    return await _one(session, await audited.transition(session, principal, campaign_id, "activate"))


@router.post(
    "/{campaign_id}/pause", response_model=CampaignOut, responses=error_responses(404, 409), summary="Pause a campaign"
)
async def pause_campaign(campaign_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> CampaignOut:
    return await _one(session, await audited.transition(session, principal, campaign_id, "pause"))


@router.post(
    "/{campaign_id}/end", response_model=CampaignOut, responses=error_responses(404, 409), summary="End a campaign"
)
async def end_campaign(campaign_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> CampaignOut:
    return await _one(session, await audited.transition(session, principal, campaign_id, "end"))
