"""The merchant-side changes, each with its audit row: the one place the API's routes and the
console's forms both call, so a change cannot be made on one path without being recorded.

Each function makes the change with the domain function (which decides what is allowed) and
records it with offers.audit.record_change in the same transaction, the values before and after
in the API's response shape. A refused change raises before anything is recorded. The void of a
redemption records itself in its one statement (offers.redemption.void_redemption).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import merchant_of
from api.schemas import CampaignOut, OfferOut, VenueOut
from api.webhook_schemas import WebhookDeliveryOut, WebhookOut
from core.auth import Principal
from core.settings import Settings
from geo import venues
from geo.venues import Venue
from offers import campaigns
from offers.audit import public, record_change
from offers.webhooks import endpoints

# campaigns.transition's action -> the audit's verb.
TRANSITIONED = {"activate": "activated", "pause": "paused", "end": "ended"}

View = dict[str, Any]


# --------------------------------------------------------------------------- views (the API's shapes)


def venue_view(venue: Venue) -> View | None:
    return public(VenueOut.model_validate(venue))


async def campaign_view(session: AsyncSession, campaign: campaigns.Campaign) -> View | None:
    out = CampaignOut.model_validate(campaign)
    remaining = await campaigns.offer_remaining(session, [o.id for o in campaign.offers])
    for offer in out.offers:
        offer.remaining = remaining.get(offer.id, 0)
    return public(out)


async def offer_view(session: AsyncSession, offer: campaigns.Offer) -> View | None:
    out = OfferOut.model_validate(offer)
    out.remaining = (await campaigns.offer_remaining(session, [offer.id])).get(offer.id, 0)
    return public(out)


def webhook_view(endpoint: dict[str, Any]) -> View | None:
    # WebhookOut has no secret: the one create_endpoint returns never reaches the audit.
    return public(WebhookOut.model_validate(endpoint))


# --------------------------------------------------------------------------- venues


async def create_venue(session: AsyncSession, principal: Principal, **fields: Any) -> Venue:
    """fields: venues.create_venue's (name, timezone, address, geofence)."""
    venue = await venues.create_venue(session, merchant_of(principal), **fields)
    await record_change(session, principal, "venue.created", venue.id, before=None, after=venue_view(venue))
    return venue


async def update_venue(
    session: AsyncSession, principal: Principal, venue_id: uuid.UUID, changes: dict[str, Any]
) -> Venue:
    before = venue_view(await venues.get_venue(session, merchant_of(principal), venue_id))
    venue = await venues.update_venue(session, merchant_of(principal), venue_id, changes)
    await record_change(session, principal, "venue.updated", venue.id, before=before, after=venue_view(venue))
    return venue


async def delete_venue(session: AsyncSession, principal: Principal, venue_id: uuid.UUID) -> None:
    before = venue_view(await venues.get_venue(session, merchant_of(principal), venue_id))
    await venues.delete_venue(session, merchant_of(principal), venue_id)
    await record_change(session, principal, "venue.deleted", venue_id, before=before, after=None)


# --------------------------------------------------------------------------- campaigns and offers


async def create_campaign(session: AsyncSession, principal: Principal, **fields: Any) -> campaigns.Campaign:
    """fields: campaigns.create_campaign's (name, venue_ids, the time span, holdout_percent, attribution_days)."""
    campaign = await campaigns.create_campaign(session, merchant_of(principal), **fields)
    await record_change(
        session, principal, "campaign.created", campaign.id, before=None, after=await campaign_view(session, campaign)
    )
    return campaign


async def _campaign_before(session: AsyncSession, principal: Principal, campaign_id: uuid.UUID) -> View | None:
    # Taken as JSON now: the domain function changes the same loaded object in place.
    return await campaign_view(session, await campaigns.get_campaign(session, merchant_of(principal), campaign_id))


async def update_campaign(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID, changes: dict[str, Any]
) -> campaigns.Campaign:
    before = await _campaign_before(session, principal, campaign_id)
    campaign = await campaigns.update_campaign(session, merchant_of(principal), campaign_id, changes)
    await record_change(
        session, principal, "campaign.updated", campaign.id, before=before, after=await campaign_view(session, campaign)
    )
    return campaign


async def transition(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID, action: campaigns.Action
) -> campaigns.Campaign:
    before = await _campaign_before(session, principal, campaign_id)
    campaign = await campaigns.transition(session, merchant_of(principal), campaign_id, action)
    await record_change(
        session,
        principal,
        f"campaign.{TRANSITIONED[action]}",
        campaign.id,
        before=before,
        after=await campaign_view(session, campaign),
    )
    return campaign


async def delete_campaign(session: AsyncSession, principal: Principal, campaign_id: uuid.UUID) -> None:
    before = await _campaign_before(session, principal, campaign_id)
    await campaigns.delete_campaign(session, merchant_of(principal), campaign_id)
    await record_change(session, principal, "campaign.deleted", campaign_id, before=before, after=None)


async def add_offer(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID, **fields: Any
) -> campaigns.Offer:
    """fields: campaigns.add_offer's (title, description, terms, rule, schedule and the limits)."""
    offer = await campaigns.add_offer(session, merchant_of(principal), campaign_id, **fields)
    await record_change(
        session, principal, "offer.created", offer.id, before=None, after=await offer_view(session, offer)
    )
    return offer


async def update_offer(
    session: AsyncSession, principal: Principal, offer_id: uuid.UUID, changes: dict[str, Any]
) -> campaigns.Offer:
    before = await offer_view(session, await campaigns.get_offer(session, merchant_of(principal), offer_id))
    offer = await campaigns.update_offer(session, merchant_of(principal), offer_id, changes)
    await record_change(
        session, principal, "offer.updated", offer.id, before=before, after=await offer_view(session, offer)
    )
    return offer


# --------------------------------------------------------------------------- webhooks


async def create_webhook(
    session: AsyncSession, settings: Settings, principal: Principal, *, url: str, events: Sequence[str]
) -> dict[str, Any]:
    """The new endpoint with its secret (for the caller to show once); the audit has no secret."""
    made = await endpoints.create_endpoint(session, settings, merchant_of(principal), url=url, events=events)
    await record_change(session, principal, "webhook.created", made["id"], before=None, after=webhook_view(made))
    return made


async def delete_webhook(session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID) -> None:
    before = webhook_view(await endpoints.get_endpoint(session, merchant_of(principal), endpoint_id))
    await endpoints.delete_endpoint(session, merchant_of(principal), endpoint_id)
    await record_change(session, principal, "webhook.deleted", endpoint_id, before=before, after=None)


async def enable_webhook(session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID) -> dict[str, Any]:
    before = webhook_view(await endpoints.get_endpoint(session, merchant_of(principal), endpoint_id))
    enabled = await endpoints.enable_endpoint(session, merchant_of(principal), endpoint_id)
    await record_change(session, principal, "webhook.enabled", endpoint_id, before=before, after=webhook_view(enabled))
    return enabled


async def redeliver_webhook(
    session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any]:
    """The delivery as it is after (its state before is not kept: redelivery starts it afresh)."""
    again = await endpoints.redeliver(session, merchant_of(principal), endpoint_id, delivery_id)
    await record_change(
        session,
        principal,
        "webhook_delivery.redelivered",
        delivery_id,
        before=None,
        after=public(WebhookDeliveryOut.model_validate(again)),
    )
    return again
