"""What customers say about a campaign: their ratings and how the merchant answers them, for the
stats (`satisfaction` in GET /v1/campaigns/{id}/stats) and the console's campaign page.

Per campaign, and broken down by venue (where the offer was unlocked) and by offer:
- ratings: how many, their mean and the 1-7 distribution;
- conversations: how many, the share the merchant has answered (at least one reply, whatever the
  status now), the median and 90th percentile of the time from the customer's first message to the
  merchant's first reply (answered conversations only), and how many open ones have waited more
  than 24 hours for an answer.

Both are aggregated in SQL (GROUPING SETS: the campaign, each venue, each offer in one pass; the
quantiles with percentile_cont) on the feedback and conversation rows of the campaign, which carry
the campaign, venue and offer of their unlock.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

RATINGS = range(1, 8)
OLD_OPEN_HOURS = 24

RATINGS_SQL = text("""
    SELECT GROUPING(venue_id) = 0 AS per_venue, GROUPING(offer_id) = 0 AS per_offer, venue_id, offer_id,
           rating, count(*)::bigint AS n
    FROM unlock_feedback WHERE campaign_id = :campaign
    GROUP BY GROUPING SETS ((rating), (venue_id, rating), (offer_id, rating))
""")
CONVERSATIONS_SQL = text("""
    SELECT GROUPING(venue_id) = 0 AS per_venue, GROUPING(offer_id) = 0 AS per_offer, venue_id, offer_id,
           count(*)::bigint AS conversations,
           count(first_reply_at)::bigint AS answered,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_reply_at - created_at)::float8 / 60)
               AS reply_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM first_reply_at - created_at)::float8 / 60)
               AS reply_p90,
           count(*) FILTER (WHERE status = 'open'
                              AND waiting_since < now() - make_interval(hours => :old_hours))::bigint AS open_over_24h
    FROM conversations WHERE campaign_id = :campaign
    GROUP BY GROUPING SETS ((), (venue_id), (offer_id))  -- () answers even for no conversations
""")
VENUE_NAMES_SQL = text("SELECT id, name FROM venues WHERE id = ANY(:ids)")


def figures(distribution: dict[int, int], conversations: dict[str, Any] | None) -> dict[str, Any]:
    """One group's figures from its rating counts and its conversations' aggregate row."""
    ratings = sum(distribution.values())
    talk = conversations or {}
    count, answered = int(talk.get("conversations") or 0), int(talk.get("answered") or 0)
    return {
        "ratings": ratings,
        "rating_mean": sum(r * n for r, n in distribution.items()) / ratings if ratings else None,
        "rating_distribution": [{"rating": r, "count": distribution.get(r, 0)} for r in RATINGS],
        "conversations": count,
        "answered": answered,
        "answered_share": answered / count if count else None,
        "first_reply_minutes": {"median": talk.get("reply_median"), "p90": talk.get("reply_p90")},
        "open_over_24h": int(talk.get("open_over_24h") or 0),
    }


def no_satisfaction() -> dict[str, Any]:
    """A campaign nobody has rated or written about yet."""
    return figures({}, None) | {"by_venue": [], "by_offer": []}


async def campaign_satisfaction(
    session: AsyncSession, campaign_id: uuid.UUID, offers: Sequence[tuple[uuid.UUID, str]]
) -> dict[str, Any]:
    """The `satisfaction` block of a campaign's stats; `offers` are its (id, title) in their order."""
    params = {"campaign": campaign_id, "old_hours": OLD_OPEN_HOURS}
    campaign: dict[int, int] = {}
    by_venue: dict[uuid.UUID, dict[int, int]] = defaultdict(dict)
    by_offer: dict[uuid.UUID, dict[int, int]] = defaultdict(dict)
    for row in (await session.execute(RATINGS_SQL, params)).mappings():
        group = (
            by_venue[row["venue_id"]]
            if row["per_venue"]
            else by_offer[row["offer_id"]]
            if row["per_offer"]
            else campaign
        )
        group[int(row["rating"])] = int(row["n"])
    talk: dict[str, Any] = {}
    talk_by_venue: dict[uuid.UUID, dict[str, Any]] = {}
    talk_by_offer: dict[uuid.UUID, dict[str, Any]] = {}
    for row in (await session.execute(CONVERSATIONS_SQL, params)).mappings():
        if row["per_venue"]:
            talk_by_venue[row["venue_id"]] = dict(row)
        elif row["per_offer"]:
            talk_by_offer[row["offer_id"]] = dict(row)
        else:
            talk = dict(row)

    venue_ids = sorted(by_venue.keys() | talk_by_venue.keys(), key=str)
    names: dict[uuid.UUID, str] = (
        dict((await session.execute(VENUE_NAMES_SQL, {"ids": venue_ids})).all()) if venue_ids else {}
    )
    offer_ids = by_offer.keys() | talk_by_offer.keys()
    return figures(campaign, talk) | {
        "by_venue": [
            {"venue_id": v, "name": names.get(v), **figures(by_venue.get(v, {}), talk_by_venue.get(v))}
            for v in venue_ids
        ],
        "by_offer": [
            {"offer_id": o, "title": title, **figures(by_offer.get(o, {}), talk_by_offer.get(o))}
            for o, title in offers
            if o in offer_ids
        ],
    }
