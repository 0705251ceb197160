"""Per-arm sums behind a campaign's effect: intention to treat (everyone exposed) and triggered
(users from their first unlock, real or ghost), each with the CUPED pre-period sums.

Reads the aggregates the check-in functions keep current (campaign_effect, campaign_triggered):
a few hundred rows whatever the campaign's size. A user counts in the closed sums once their window
has closed (exposure or trigger day + attribution_days < today, UTC), as offers/stats.py does for
the intention-to-treat figures.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

ARMS = ("treatment", "control")


@dataclass(frozen=True)
class ArmSums:
    """One arm's sums. `users` counts everyone; every other figure only users whose window has
    closed. x is a user's accepted visits to the campaign's venues in the 28 days before exposure,
    y their return visits: pre = Σx, pre_sq = Σx², pre_visits = Σx·y."""

    users: int = 0
    closed_users: int = 0
    returned: int = 0
    visits: int = 0
    visits_sq: int = 0
    pre: int = 0
    pre_sq: int = 0
    pre_visits: int = 0


# One query for both analyses: the intention-to-treat sums by exposure day, the triggered ones by
# trigger day, each closed once its day + attribution_days is before today.
EFFECT_SUMS_SQL = text("""
    SELECT analysis, arm,
           sum(users)::bigint AS users,
           sum(users) FILTER (WHERE closed)::bigint AS closed_users,
           sum(returned_users) FILTER (WHERE closed)::bigint AS returned,
           sum(visits) FILTER (WHERE closed)::bigint AS visits,
           sum(visits_sq) FILTER (WHERE closed)::bigint AS visits_sq,
           sum(pre) FILTER (WHERE closed)::bigint AS pre,
           sum(pre_sq) FILTER (WHERE closed)::bigint AS pre_sq,
           sum(pre_visits) FILTER (WHERE closed)::bigint AS pre_visits
    FROM (SELECT 'itt' AS analysis, e.arm, e.users, e.returned_users, e.visits, e.visits_sq, e.pre, e.pre_sq,
                 e.pre_visits, e.exposure_day + :attribution_days < :today AS closed
          FROM campaign_effect e WHERE e.campaign_id = :campaign
          UNION ALL
          SELECT 'triggered', t.arm, t.users, t.returned_users, t.visits, t.visits_sq, t.pre, t.pre_sq,
                 t.pre_visits, t.trigger_day + :attribution_days < :today
          FROM campaign_triggered t WHERE t.campaign_id = :campaign) s
    GROUP BY analysis, arm
""")
ANALYSES = ("itt", "triggered")


def _sums(row: RowMapping) -> ArmSums:
    return ArmSums(**{field: int(row[field] or 0) for field in ArmSums.__dataclass_fields__})


async def effect_sums(
    session: AsyncSession, campaign_id: uuid.UUID | str, attribution_days: int, today: date
) -> dict[str, dict[str, ArmSums]]:
    """{"itt": {"treatment": ArmSums, "control": ArmSums}, "triggered": {...}} for one campaign;
    an arm or analysis with no users yet has all sums 0."""
    params = {"campaign": str(campaign_id), "attribution_days": attribution_days, "today": today}
    rows = (await session.execute(EFFECT_SUMS_SQL, params)).mappings().all()
    found = {(str(row["analysis"]), str(row["arm"])): _sums(row) for row in rows}
    return {analysis: {arm: found.get((analysis, arm), ArmSums()) for arm in ARMS} for analysis in ANALYSES}
