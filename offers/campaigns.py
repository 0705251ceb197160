"""Campaigns and their offers: the merchant side.

A campaign runs at some of the merchant's venues between two times; its holdout share,
assignment salt and attribution window are frozen once it has been active (a trigger in
the schema enforces the same), because the measurement depends on them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ForeignKey, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base
from core.errors import Conflict, NotFound, ValidationFailed
from offers.rules import Rule, Schedule, budget_for, budget_shards

MEASUREMENT_FIELDS = {"holdout_percent", "attribution_days"}
Action = Literal["activate", "pause", "end"]
TRANSITIONS: dict[Action, tuple[set[str], str]] = {  # action -> (allowed from, to)
    "activate": ({"draft", "paused"}, "active"),
    "pause": ({"active"}, "paused"),
    "end": ({"draft", "active", "paused"}, "ended"),
}


class CampaignVenue(Base):
    __tablename__ = "campaign_venues"

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    venue_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)


class Offer(Base):
    __tablename__ = "offers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    title: Mapped[str]
    description: Mapped[str]
    terms: Mapped[str]
    rule: Mapped[dict[str, Any]] = mapped_column(JSONB)
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    per_user_limit: Mapped[int]
    total_limit: Mapped[int]
    redeem_within_minutes: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    merchant_id: Mapped[uuid.UUID]
    name: Mapped[str]
    status: Mapped[str] = mapped_column(server_default="draft")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    holdout_percent: Mapped[int]
    attribution_days: Mapped[int]
    activated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    venue_links: Mapped[list[CampaignVenue]] = relationship(lazy="selectin", cascade="all, delete-orphan")
    offers: Mapped[list[Offer]] = relationship(lazy="selectin", order_by=Offer.created_at)

    @property
    def venue_ids(self) -> list[uuid.UUID]:
        return sorted(link.venue_id for link in self.venue_links)


async def _check_venues(session: AsyncSession, merchant_id: uuid.UUID, venue_ids: list[uuid.UUID]) -> None:
    owned = set(
        await session.scalars(
            text("SELECT id FROM venues WHERE id = ANY(:ids) AND merchant_id = :merchant AND deleted_at IS NULL"),
            {"ids": list(venue_ids), "merchant": merchant_id},
        )
    )
    missing = [str(v) for v in venue_ids if v not in owned]
    if missing:
        raise ValidationFailed.for_field("venue_ids", "unknown_venue", f"no such venue of yours: {', '.join(missing)}")


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ValidationFailed.for_field("ends_at", "ends_before_start", "ends_at must be after starts_at")


async def create_campaign(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    name: str,
    venue_ids: list[uuid.UUID],
    starts_at: datetime,
    ends_at: datetime,
    holdout_percent: int,
    attribution_days: int,
) -> Campaign:
    _check_times(starts_at, ends_at)
    venue_ids = list(dict.fromkeys(venue_ids))
    await _check_venues(session, merchant_id, venue_ids)
    campaign = Campaign(
        merchant_id=merchant_id,
        name=name,
        starts_at=starts_at,
        ends_at=ends_at,
        holdout_percent=holdout_percent,
        attribution_days=attribution_days,
        venue_links=[CampaignVenue(venue_id=v) for v in venue_ids],
        offers=[],
    )
    session.add(campaign)
    await session.flush()
    await session.refresh(campaign)
    return campaign


async def get_campaign(
    session: AsyncSession, merchant_id: uuid.UUID, campaign_id: uuid.UUID, *, for_update: bool = False
) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id, Campaign.merchant_id == merchant_id)
    campaign = await session.scalar(query.with_for_update() if for_update else query)
    if campaign is None:
        raise NotFound("campaign not found")
    return campaign


async def list_campaigns(
    session: AsyncSession, merchant_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Campaign]:
    query = select(Campaign).where(Campaign.merchant_id == merchant_id)
    if after is not None:
        query = query.where(Campaign.id > after)
    return list(await session.scalars(query.order_by(Campaign.id).limit(limit)))


async def update_campaign(
    session: AsyncSession, merchant_id: uuid.UUID, campaign_id: uuid.UUID, changes: dict[str, Any]
) -> Campaign:
    campaign = await get_campaign(session, merchant_id, campaign_id, for_update=True)
    if campaign.status == "ended":
        raise Conflict("an ended campaign cannot change", code="campaign_ended")
    frozen = sorted(MEASUREMENT_FIELDS & changes.keys())
    if frozen and campaign.activated_at is not None:
        raise Conflict(
            f"{', '.join(frozen)} cannot change once the campaign has been active", code="measurement_frozen"
        )
    if "venue_ids" in changes:
        venue_ids = list(dict.fromkeys(changes.pop("venue_ids")))
        await _check_venues(session, merchant_id, venue_ids)
        campaign.venue_links = [CampaignVenue(venue_id=v) for v in venue_ids]
    for field, value in changes.items():
        setattr(campaign, field, value)
    _check_times(campaign.starts_at, campaign.ends_at)
    await session.flush()
    await session.refresh(campaign)
    return campaign


async def add_offer(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    campaign_id: uuid.UUID,
    *,
    title: str,
    description: str,
    terms: str,
    rule: Rule,
    schedule: Schedule | None,
    per_user_limit: int,
    total_limit: int,
    redeem_within_minutes: int,
) -> Offer:
    campaign = await get_campaign(session, merchant_id, campaign_id, for_update=True)
    if campaign.status == "ended":
        raise Conflict("an ended campaign takes no new offers", code="campaign_ended")
    offer = Offer(
        campaign_id=campaign.id,
        title=title,
        description=description,
        terms=terms,
        rule=rule.model_dump(),
        schedule=schedule.to_json() if schedule else None,
        per_user_limit=per_user_limit,
        total_limit=total_limit,
        redeem_within_minutes=redeem_within_minutes,
    )
    session.add(offer)
    await session.flush()
    shards = budget_shards(budget_for(rule, total_limit))
    await session.execute(
        text(
            "INSERT INTO offer_budget_shards (offer_id, shard, remaining) "
            "SELECT :offer, s - 1, r FROM unnest(CAST(:remaining AS int[])) WITH ORDINALITY AS t(r, s)"
        ),
        {"offer": offer.id, "remaining": shards},
    )
    await session.refresh(campaign)
    return offer


async def offer_remaining(session: AsyncSession, offer_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Unlocks left in each offer's budget, in one query however many offers (a page of campaigns)."""
    if not offer_ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT offer_id, sum(remaining)::int FROM offer_budget_shards WHERE offer_id = ANY(:ids) GROUP BY offer_id"
        ),
        {"ids": offer_ids},
    )
    return {offer_id: remaining for offer_id, remaining in rows}


async def transition(session: AsyncSession, merchant_id: uuid.UUID, campaign_id: uuid.UUID, action: Action) -> Campaign:
    campaign = await get_campaign(session, merchant_id, campaign_id, for_update=True)
    allowed_from, target = TRANSITIONS[action]
    if campaign.status not in allowed_from:
        raise Conflict(f"cannot {action} a campaign that is {campaign.status}", code="invalid_transition")
    if target == "active":
        if not campaign.offers:
            raise Conflict("a campaign needs at least one offer before it is activated", code="no_offers")
        if await session.scalar(select(func.now() >= campaign.ends_at)):
            raise Conflict("the campaign's end has passed", code="campaign_over")
        if campaign.activated_at is None:
            campaign.activated_at = func.now()
    campaign.status = target
    await session.flush()
    await session.refresh(campaign)
    return campaign
