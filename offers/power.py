"""A campaign's power plan before launch: how many users, and how many days at the venues'
current traffic, it takes to detect a given lift in the return-visit rate.

Read from the campaign venues' accepted check-ins over the last 28 days, on the server's clock
(received_at), the same clock as the rest of the plan's days:

* daily_new_users: distinct users with an accepted check-in there, over 28. Each would be
  exposed once, on their first visit, so this is the rate at which a campaign gains users.
* baseline return rate: of the users whose first visit in those 28 days came at least
  attribution_days before today (so their window has closed), the share with another accepted
  check-in at a campaign venue within attribution_days after it. It is the campaign's outcome
  measured on history without the campaign, i.e. the expected control rate. With nobody to
  measure (a new venue, or attribution_days of 28 or more) DEFAULT_BASELINE is used.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from offers import stats_math
from offers.campaigns import get_campaign

HISTORY_DAYS = 28
DEFAULT_BASELINE = 0.25  # a typical return rate within a week at a café, used with no history
DEFAULT_LIFT_PP = 2.0

HISTORY_SQL = text("""
    WITH visits AS (
        SELECT c.user_id, c.received_at
        FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = :campaign AND c.status = 'accepted'
          AND c.received_at >= CAST(:today AS date) - :history_days
          AND c.received_at < CAST(:today AS date)
    ), firsts AS (
        SELECT user_id, min(received_at) AS first_at FROM visits GROUP BY user_id
    )
    SELECT count(*)::bigint AS users,
           count(*) FILTER (WHERE f.first_at < CAST(:today AS date) - :attribution_days)::bigint AS closed,
           count(*) FILTER (
               WHERE f.first_at < CAST(:today AS date) - :attribution_days
                 AND EXISTS (SELECT 1 FROM visits v
                             WHERE v.user_id = f.user_id AND v.received_at > f.first_at
                               AND v.received_at <= f.first_at + make_interval(days => :attribution_days))
           )::bigint AS returned
    FROM firsts f
""")


@dataclass(frozen=True)
class Power:
    users_treatment: int
    users_control: int
    days: int | None
    daily_new_users: float
    baseline_return_rate: float
    lift_pp: float


async def power_for_campaign(
    session: AsyncSession, merchant_id: uuid.UUID, campaign_id: uuid.UUID, lift_pp: float, today: date
) -> Power:
    campaign = await get_campaign(session, merchant_id, campaign_id)
    if campaign.status == "ended":  # a plan is for a campaign still to run; an ended one has its stats
        raise Conflict("an ended campaign has no plan to make: its stats say what it did", code="campaign_ended")
    row = (
        await session.execute(
            HISTORY_SQL,
            {
                "campaign": campaign.id,
                "today": today,
                "history_days": HISTORY_DAYS,
                "attribution_days": campaign.attribution_days,
            },
        )
    ).one()
    baseline = int(row.returned) / int(row.closed) if row.closed else DEFAULT_BASELINE
    daily = int(row.users) / HISTORY_DAYS
    # a 0% or 100% holdout has no comparison; plan as if at the nearest workable share
    control_share = min(max(campaign.holdout_percent, 1), 99) / 100
    plan = stats_math.power_plan(baseline, lift_pp / 100, control_share, daily, campaign.attribution_days)
    return Power(plan.users_treatment, plan.users_control, plan.days, daily, baseline, lift_pp)
