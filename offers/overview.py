"""Campaigns at a glance, for a list of them: unlocks, redemptions, budget left and the
headline effect of each.

The figures are the stats' own: the same aggregates as offers.stats.campaign_stats, turned
into an effect by the same functions (effect_summary, stats_status), so the list and the
campaign's results page cannot disagree. What differs is the cost: campaign_stats reads six
queries per campaign (the funnel by day and venue, time to redeem, venue names), which a
page of campaigns would multiply. A page is read here in three queries, however many
campaigns it has; the rest of the stats are on each campaign's results page.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from offers.campaigns import Campaign, offer_remaining
from offers.stats import effect_summary, stats_status
from offers.stats_schema import Effect

# campaign_counters' metrics, summed over days and venues (as the stats' funnel totals are).
TOTALS_SQL = text("""
    SELECT campaign_id, metric, sum(n)::bigint AS n
    FROM campaign_counters
    WHERE campaign_id = ANY(:campaigns) AND metric IN ('unlock', 'redemption', 'void')
    GROUP BY campaign_id, metric
""")

# offers.stats.EFFECT_SQL for many campaigns at once: the per-arm sums of the users whose
# attribution window has closed (exposure day + the campaign's attribution_days < today).
EFFECT_SQL = text("""
    SELECT e.campaign_id, e.arm,
           sum(e.users)::bigint AS users,
           sum(e.users) FILTER (WHERE e.closed)::bigint AS closed_users,
           sum(e.returned_users) FILTER (WHERE e.closed)::bigint AS returned,
           sum(e.visits) FILTER (WHERE e.closed)::bigint AS visits,
           sum(e.visits_sq) FILTER (WHERE e.closed)::bigint AS visits_sq
    FROM (SELECT e.*, e.exposure_day + c.attribution_days < :today AS closed
          FROM campaign_effect e JOIN campaigns c ON c.id = e.campaign_id
          WHERE e.campaign_id = ANY(:campaigns)) e
    GROUP BY e.campaign_id, e.arm
""")
ARM_SUMS = ("users", "closed_users", "returned", "visits", "visits_sq")


@dataclass(frozen=True)
class CampaignGlance:
    campaign_id: uuid.UUID
    unlocks: int
    redemptions: int  # not voided
    budget: int  # unlocks the offers that are not retired may make in all
    remaining: int  # of which left
    status: str  # the stats' status: collecting, below_min_data, ready or srm_alert
    effect: Effect  # the stats' effect block, as GET /v1/campaigns/{id}/stats reports it


async def campaign_glances(
    session: AsyncSession, campaigns: Sequence[Campaign], today: date
) -> dict[uuid.UUID, CampaignGlance]:
    """Each campaign's glance, in three queries for the whole list."""
    ids = [campaign.id for campaign in campaigns]
    if not ids:
        return {}
    totals: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for campaign_id, metric, n in await session.execute(TOTALS_SQL, {"campaigns": ids}):
        totals[campaign_id][metric] = int(n)
    arms: dict[uuid.UUID, dict[str, dict[str, int]]] = {
        campaign_id: {arm: dict.fromkeys(ARM_SUMS, 0) for arm in ("treatment", "control")} for campaign_id in ids
    }
    for row in await session.execute(EFFECT_SQL, {"campaigns": ids, "today": today}):
        arms[row.campaign_id][row.arm] = {name: int(getattr(row, name) or 0) for name in ARM_SUMS}
    live_offers = [offer for campaign in campaigns for offer in campaign.offers if offer.status != "retired"]
    remaining = await offer_remaining(session, [offer.id for offer in live_offers])

    glances = {}
    for campaign in campaigns:
        effect: dict[str, Any] = effect_summary(arms[campaign.id], campaign.holdout_percent)
        effect["attribution_days"] = campaign.attribution_days
        offers = [offer for offer in campaign.offers if offer.status != "retired"]
        counted = totals[campaign.id]
        glances[campaign.id] = CampaignGlance(
            campaign_id=campaign.id,
            unlocks=counted["unlock"],
            redemptions=counted["redemption"] - counted["void"],
            budget=sum(offer.budget for offer in offers),
            remaining=sum(remaining.get(offer.id, 0) for offer in offers),
            status=stats_status(effect),
            effect=Effect.model_validate(effect),
        )
    return glances
