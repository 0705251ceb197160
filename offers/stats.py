"""A campaign's funnel and its measured effect against the randomized holdout.

Reads the aggregates the check-in and redemption functions keep current
(campaign_counters, campaign_effect, campaign_redeem_minutes), so a campaign with millions
of events answers from a few hundred rows; only time to redeem also reads the unredeemed
unlocks, from a covering index, because each is censored at its own age or window.

Effect is intention to treat: every exposed user counts from first exposure, whether or
not they unlocked or redeemed. The outcome is a return visit: at least one later accepted
check-in at a campaign venue within attribution_days (the exposing visit excluded). Only
users whose window has closed are analysed (exposure day + attribution_days < today, UTC).
Control users cannot redeem, so redemption is never reported as lift.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from offers import stats_math
from offers.campaigns import get_campaign

MIN_USERS_PER_ARM = 50  # below this, intervals are too wide to act on

COUNTERS_SQL = text("""
    SELECT day, venue_id, metric, sum(n)::bigint AS n
    FROM campaign_counters WHERE campaign_id = :campaign
    GROUP BY day, venue_id, metric
""")

EFFECT_SQL = text("""
    SELECT arm,
           sum(users)::bigint AS users,
           sum(users) FILTER (WHERE closed)::bigint AS closed_users,
           sum(returned_users) FILTER (WHERE closed)::bigint AS returned,
           sum(visits) FILTER (WHERE closed)::bigint AS visits,
           sum(visits_sq) FILTER (WHERE closed)::bigint AS visits_sq
    FROM (SELECT e.*, e.exposure_day + :attribution_days < :today AS closed
          FROM campaign_effect e WHERE e.campaign_id = :campaign) e
    GROUP BY arm
""")

# Time to redeem: redemptions by minute, and the unlocks not redeemed, censored when they
# stopped being observed: open ones at their age, expired ones at their own offer's window
# (censoring them later would keep them at risk for longer-lived offers' redemptions).
# Expired ones are counted from aggregates (unredeemed per window, less the open ones), so
# only the few unlocks still open are read, on the partial index of open unlocks.
REDEEM_MINUTES_SQL = text("""
    SELECT minutes, sum(n)::bigint FROM campaign_redeem_minutes
    WHERE campaign_id = :campaign GROUP BY minutes HAVING sum(n) > 0
""")
UNREDEEMED_BY_WINDOW_SQL = text("""
    SELECT window_minutes, sum(n)::bigint FROM campaign_unredeemed
    WHERE campaign_id = :campaign GROUP BY window_minutes
""")
OPEN_UNLOCKS_SQL = text("""
    SELECT window_minutes(u) AS window_minutes, floor(extract(epoch FROM now() - u.unlocked_at) / 60)::int AS age,
           count(*)::bigint
    FROM unlocks u
    WHERE u.campaign_id = :campaign AND u.redeemed_at IS NULL AND u.expires_at > now()
    GROUP BY 1, 2
""")
VENUE_NAMES_SQL = text("SELECT id, name FROM venues WHERE id = ANY(:ids)")


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _interval(values: tuple[float, ...] | None) -> dict[str, float] | None:
    if values is None:
        return None
    estimate, low, high = values
    return {"estimate": estimate, "ci_low": low, "ci_high": high}


def effect_summary(arms: dict[str, dict[str, int]], holdout_percent: int) -> dict[str, Any]:
    """The effect block from per-arm sums (plain function: tested without a database)."""
    t, c = arms["treatment"], arms["control"]
    summary: dict[str, Any] = {"metric": "return_visit_rate", "arms": {}}
    for name, arm in arms.items():
        rate = _rate(arm["returned"], arm["closed_users"])
        low, high = stats_math.wilson_interval(arm["returned"], arm["closed_users"])
        summary["arms"][name] = {
            "users_exposed": arm["users"],
            "users_window_closed": arm["closed_users"],
            "returned_users": arm["returned"],
            "return_visit_rate": rate,
            "return_visit_rate_ci": {"ci_low": low, "ci_high": high} if arm["closed_users"] else None,
            "visits_per_user": _rate(arm["visits"], arm["closed_users"]),
        }
    x_t, n_t, x_c, n_c = t["returned"], t["closed_users"], c["returned"], c["closed_users"]
    if n_t and n_c:
        low, high = stats_math.newcombe_diff_interval(x_t, n_t, x_c, n_c)
        summary["absolute_lift"] = {"estimate": x_t / n_t - x_c / n_c, "ci_low": low, "ci_high": high}
        summary["relative_lift"] = _interval(stats_math.relative_lift_interval(x_t, n_t, x_c, n_c))
        summary["p_value"] = stats_math.two_proportion_p_value(x_t, n_t, x_c, n_c)
        summary["minimum_detectable_effect"] = stats_math.minimum_detectable_effect(x_c / n_c, n_t, n_c)
        visits = stats_math.mean_diff_interval(t["visits"], t["visits_sq"], n_t, c["visits"], c["visits_sq"], n_c)
        summary["visits_per_user_diff"] = _interval(visits)
        # extra visits the offer brought among treated users whose window closed
        summary["incremental_visits"] = visits[0] * n_t if visits else None
    else:
        summary.update(
            absolute_lift=None,
            relative_lift=None,
            p_value=None,
            minimum_detectable_effect=None,
            visits_per_user_diff=None,
            incremental_visits=None,
        )
    summary["srm"] = {
        "p_value": stats_math.srm_p_value(t["users"], c["users"], holdout_percent),
        "alert": stats_math.srm_alert(t["users"], c["users"], holdout_percent),
        "expected_control_share": holdout_percent / 100,
        "observed_control_share": _rate(c["users"], t["users"] + c["users"]),
    }
    return summary


def stats_status(effect: dict[str, Any]) -> str:
    if effect["srm"]["alert"]:
        return "srm_alert"
    closed = [arm["users_window_closed"] for arm in effect["arms"].values()]
    if not any(closed):
        return "collecting"
    if min(closed) < MIN_USERS_PER_ARM:
        return "below_min_data"
    return "ready"


async def campaign_stats(
    session: AsyncSession, merchant_id: uuid.UUID, campaign_id: uuid.UUID, today: date
) -> dict[str, Any]:
    # One snapshot for every query below, so counters, sums and unlocks agree with each other.
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    campaign = await get_campaign(session, merchant_id, campaign_id)
    params = {"campaign": campaign.id}

    by_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_venue: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    for day, venue_id, metric, n in await session.execute(COUNTERS_SQL, params):
        for bucket in (by_day[day], by_venue[venue_id], totals):
            bucket[metric] += n

    arms = {
        arm: {"users": 0, "closed_users": 0, "returned": 0, "visits": 0, "visits_sq": 0}
        for arm in ("treatment", "control")
    }
    for row in await session.execute(
        EFFECT_SQL, {**params, "attribution_days": campaign.attribution_days, "today": today}
    ):
        arms[row.arm] = {k: int(getattr(row, k) or 0) for k in arms[row.arm]}
    effect = effect_summary(arms, campaign.holdout_percent)
    effect["attribution_days"] = campaign.attribution_days

    redeemed = [(float(m), int(n), 0) for m, n in await session.execute(REDEEM_MINUTES_SQL, params)]
    expired = {int(w): int(n) for w, n in await session.execute(UNREDEEMED_BY_WINDOW_SQL, params)}
    still_open = []
    for window, age, n in await session.execute(OPEN_UNLOCKS_SQL, params):
        still_open.append((float(age), 0, int(n)))
        expired[window] = expired.get(window, 0) - n
    censored = still_open + [(float(w), 0, n) for w, n in expired.items() if n > 0]
    survival = stats_math.kaplan_meier_grouped(redeemed + censored)
    unlocks, net_redemptions = totals["unlock"], totals["redemption"] - totals["void"]

    names: dict[uuid.UUID, str] = (
        dict((await session.execute(VENUE_NAMES_SQL, {"ids": list(by_venue)})).all()) if by_venue else {}
    )
    treatment_users = arms["treatment"]["users"]
    return {
        "campaign_id": str(campaign.id),
        "campaign_status": campaign.status,
        "status": stats_status(effect),
        "generated_at": datetime.now().astimezone().isoformat(),
        "funnel": {
            **_funnel(totals),
            "unique_users": treatment_users + arms["control"]["users"],
            "exposures": {"treatment": treatment_users, "control": arms["control"]["users"]},
            "redemption_rate_of_unlocks": _rate(net_redemptions, unlocks),
            "redemption_rate_of_treatment_users": _rate(net_redemptions, treatment_users),
            "time_to_redeem_minutes": {
                "median": survival.median,
                "p75": survival.p75,
                "unlocks": survival.n,
                "redeemed": survival.events,
                "method": "kaplan_meier, unredeemed unlocks censored",
            },
        },
        "effect": effect,
        "by_day": [{"day": d.isoformat(), **_funnel(m)} for d, m in sorted(by_day.items())],
        "by_venue": [
            {"venue_id": str(v), "name": names.get(v), **_funnel(m)}
            for v, m in sorted(by_venue.items(), key=lambda item: str(item[0]))
        ],
    }


def _funnel(metrics: dict[str, int]) -> dict[str, Any]:
    rejected = {k.split(":", 1)[1]: n for k, n in metrics.items() if k.startswith("checkin_rejected:")}
    return {
        "checkins_accepted": metrics.get("checkin_accepted", 0),
        "checkins_rejected": sum(rejected.values()),
        "rejected_by_reason": dict(sorted(rejected.items())),
        "exposed_treatment": metrics.get("exposure:treatment", 0),
        "exposed_control": metrics.get("exposure:control", 0),
        "unlocks": metrics.get("unlock", 0),
        "redemptions": metrics.get("redemption", 0) - metrics.get("void", 0),
        "voids": metrics.get("void", 0),
    }


CSV_COLUMNS = [
    "breakdown",
    "key",
    "name",
    "checkins_accepted",
    "checkins_rejected",
    "exposed_treatment",
    "exposed_control",
    "unlocks",
    "redemptions",
    "voids",
]


# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_text(value: str | None) -> str | None:
    """Merchant-chosen text (a venue name) shown as text, never run as a formula."""
    return "'" + value if value and value.startswith(FORMULA_STARTS) else value


def stats_csv(stats: dict[str, Any]) -> str:
    """The by-day and by-venue breakdowns as one CSV table, for spreadsheets."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in stats["by_day"]:
        writer.writerow({"breakdown": "day", "key": row["day"], **row})
    for row in stats["by_venue"]:
        writer.writerow({"breakdown": "venue", "key": row["venue_id"], **row, "name": _spreadsheet_text(row["name"])})
    return out.getvalue()
