"""Campaigns and their offers: the merchant side.

A campaign runs at some of the merchant's venues between two times; its holdout share,
assignment salt and attribution window are frozen once it has been active (a trigger in
the schema enforces the same), because the measurement depends on them.

An offer is `active`, `paused` or `retired`; only an active one unlocks (the check-in's
offer loop, accept_in_campaign, filters on it). Once its campaign has been active, what
decides who unlocks what is frozen too (OFFER_FROZEN_ONCE_ACTIVE) and the budget can only
grow; texts, schedule and status stay the merchant's to change (see update_offer).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import ForeignKey, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base
from core.errors import Conflict, NotFound, ValidationFailed
from offers.rules import SHARDS, Rule, Schedule, budget_for, budget_shards

MEASUREMENT_FIELDS = {"holdout_percent", "attribution_days"}
OfferStatus = Literal["active", "paused", "retired"]
OFFER_TEXTS = frozenset({"title", "description", "terms"})
# What decides who unlocks what, and for how long a code is good: changing it halfway would
# measure two different offers as one. To offer something else, add a new offer.
OFFER_FROZEN_ONCE_ACTIVE = frozenset({"rule", "per_user_limit", "redeem_within_minutes"})
RULES: TypeAdapter[Rule] = TypeAdapter(Rule)
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
    status: Mapped[str] = mapped_column(server_default="active")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    @property
    def budget(self) -> int:
        """Unlocks the offer may make in all (a flash offer stops at its first N users)."""
        return budget_for(RULES.validate_python(self.rule), self.total_limit)


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
    await _add_to_budget(session, offer.id, budget_for(rule, total_limit))
    await session.refresh(campaign)
    return offer


async def _add_to_budget(session: AsyncSession, offer_id: uuid.UUID, amount: int) -> None:
    """Spread `amount` more unlocks over the offer's budget rows (creating the missing ones): a
    grown budget gets the same spread as a new one, so concurrent unlocks still do not queue."""
    if amount <= 0:
        return
    await session.execute(
        text(
            "INSERT INTO offer_budget_shards AS b (offer_id, shard, remaining) "
            "SELECT :offer, s - 1, r FROM unnest(CAST(:remaining AS int[])) WITH ORDINALITY AS t(r, s) "
            "ON CONFLICT (offer_id, shard) DO UPDATE SET remaining = b.remaining + excluded.remaining"
        ),
        {"offer": offer_id, "remaining": budget_shards(amount, SHARDS)},
    )


async def list_offers(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    campaign_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Offer]:
    """The campaign's offers in the order they were added (the order the check-in tries them),
    up to limit + 1 of them after the position `after` (a keyset page, core/keyset.py)."""
    campaign = await get_campaign(session, merchant_id, campaign_id)
    query = select(Offer).where(Offer.campaign_id == campaign.id)
    if after is not None:
        query = query.where(tuple_(Offer.created_at, Offer.id) > tuple_(*after))
    return list(await session.scalars(query.order_by(Offer.created_at, Offer.id).limit(limit + 1)))


async def get_offer(session: AsyncSession, merchant_id: uuid.UUID, offer_id: uuid.UUID) -> Offer:
    """The merchant's offer; another merchant's answers exactly like a missing one."""
    offer = await session.scalar(
        select(Offer)
        .join(Campaign, Campaign.id == Offer.campaign_id)
        .where(Offer.id == offer_id, Campaign.merchant_id == merchant_id)
    )
    if offer is None:
        raise NotFound("offer not found")
    return offer


async def _locked_offer(session: AsyncSession, merchant_id: uuid.UUID, offer_id: uuid.UUID) -> tuple[Campaign, Offer]:
    """The offer and its campaign, both rows locked: the campaign's first, in the order add_offer
    and transition take it, so an activation and an offer's change happen one after the other."""
    offer = await get_offer(session, merchant_id, offer_id)
    campaign = await get_campaign(session, merchant_id, offer.campaign_id, for_update=True)
    locked = await session.scalar(
        select(Offer).where(Offer.id == offer_id).with_for_update().execution_options(populate_existing=True)
    )
    if locked is None:  # deleted with its draft campaign in between
        raise NotFound("offer not found")
    return campaign, locked


def _stored(value: Any) -> Any:
    """A change as the offer row holds it (rules and schedules as JSON), so an unchanged value
    compares equal to the current one."""
    if isinstance(value, Schedule):
        return value.to_json()
    return value.model_dump() if isinstance(value, BaseModel) else value


async def update_offer(
    session: AsyncSession, merchant_id: uuid.UUID, offer_id: uuid.UUID, changes: dict[str, Any]
) -> Offer:
    """Change an offer. Values equal to the current ones are no change (a form may send them all).

    - An ended campaign's offers do not change (409 campaign_ended), like the campaign itself.
    - A retired offer stays retired: only its texts can still change, because codes already
      unlocked show them in wallets until they expire (409 offer_retired otherwise).
    - Once the campaign has been active, rule, per_user_limit and redeem_within_minutes are
      frozen (409 measurement_frozen) and total_limit can only grow (409 budget_cannot_shrink):
      pausing or retiring stops an offer without rewriting what has been measured.
    - Texts, schedule and status (active <-> paused, either -> retired) change any time before.
    """
    campaign, offer = await _locked_offer(session, merchant_id, offer_id)
    stored = {field: _stored(value) for field, value in changes.items()}
    changed = {field: value for field, value in stored.items() if value != getattr(offer, field)}
    if not changed:
        return offer
    if campaign.status == "ended":
        raise Conflict("an ended campaign's offers cannot change", code="campaign_ended")
    if offer.status == "retired" and changed.keys() - OFFER_TEXTS:
        raise Conflict(
            "a retired offer cannot be resumed or changed; only its texts can (add a new offer instead)",
            code="offer_retired",
        )
    has_been_active = campaign.activated_at is not None
    frozen = sorted(OFFER_FROZEN_ONCE_ACTIVE & changed.keys())
    if frozen and has_been_active:
        raise Conflict(
            f"{', '.join(frozen)} cannot change once the campaign has been active: they decide who unlocks "
            "what, which is what is being measured; add a new offer instead",
            code="measurement_frozen",
        )
    if has_been_active and changed.get("total_limit", offer.total_limit) < offer.total_limit:
        raise Conflict(
            f"total_limit can only grow once the campaign has been active (now {offer.total_limit}); "
            "pause or retire the offer to stop it",
            code="budget_cannot_shrink",
        )
    budget_before = offer.budget
    for field, value in changed.items():
        setattr(offer, field, value)
    if offer.budget != budget_before:
        if has_been_active:
            await _add_to_budget(session, offer.id, offer.budget - budget_before)  # only grows, see above
        else:
            # Never active, so nothing was unlocked: the budget is laid out afresh.
            await session.execute(text("DELETE FROM offer_budget_shards WHERE offer_id = :offer"), {"offer": offer.id})
            await _add_to_budget(session, offer.id, offer.budget)
    await session.flush()
    await session.refresh(offer)
    return offer


async def delete_campaign(session: AsyncSession, merchant_id: uuid.UUID, campaign_id: uuid.UUID) -> None:
    """Delete a draft with its offers and budgets. A campaign that has been active keeps its
    record (end it instead): its check-ins, exposures and codes refer to it."""
    campaign = await get_campaign(session, merchant_id, campaign_id, for_update=True)
    if campaign.status != "draft":
        raise Conflict(
            f"only a draft can be deleted; this campaign is {campaign.status} (end it instead)",
            code="campaign_not_draft",
        )
    # In SQL, so the schema's ON DELETE CASCADE removes offers, budget rows and venue links.
    await session.execute(text("DELETE FROM campaigns WHERE id = :campaign"), {"campaign": campaign.id})
    session.expunge(campaign)


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
        if all(offer.status == "retired" for offer in campaign.offers):
            raise Conflict("a campaign needs at least one offer that is not retired to be activated", code="no_offers")
        if await session.scalar(select(func.now() >= campaign.ends_at)):
            raise Conflict("the campaign's end has passed", code="campaign_over")
        if campaign.activated_at is None:
            campaign.activated_at = func.now()
    campaign.status = target
    await session.flush()
    await session.refresh(campaign)
    return campaign
