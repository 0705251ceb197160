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

Beside it: the triggered analysis (users from their first unlock, real or ghost in control),
CUPED on return visits per user with pre-period visits as covariate, and always-valid intervals
(offers/stats_math.py has the formulas; README "Measurement" the fields).
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from offers import stats_math
from offers.campaigns import Campaign, get_campaign, offer_remaining
from offers.effect_sums import effect_sums
from offers.rules import Rule, budget_for
from offers.satisfaction import campaign_satisfaction
from offers.stats_schema import Effect

MIN_USERS_PER_ARM = 50  # below this, intervals are too wide to act on
# The time-to-redeem curve keeps a point once the share redeemed has risen by this much since
# the last one kept: a 90-day redemption window can have 129,600 distinct minutes, and steps
# of under 0.1 percentage point are invisible on a chart.
CURVE_RESOLUTION = 0.001

COUNTERS_SQL = text("""
    SELECT day, venue_id, metric, sum(n)::bigint AS n
    FROM campaign_counters WHERE campaign_id = :campaign
    GROUP BY day, venue_id, metric
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


def _interval(values: tuple[float, ...] | None, unit: str = "rate_difference") -> dict[str, Any] | None:
    if values is None:
        return None
    estimate, low, high = values
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "unit": unit}


def _arm_figures(arm: dict[str, int]) -> dict[str, Any]:
    low, high = stats_math.wilson_interval(arm["returned"], arm["closed_users"])
    return {
        "users_exposed": arm["users"],
        "users_window_closed": arm["closed_users"],
        "returned_users": arm["returned"],
        "return_visit_rate": _rate(arm["returned"], arm["closed_users"]),
        "return_visit_rate_ci": {"ci_low": low, "ci_high": high} if arm["closed_users"] else None,
        "visits_per_user": _rate(arm["visits"], arm["closed_users"]),
    }


def _lifts(t: dict[str, int], c: dict[str, int]) -> dict[str, Any]:
    """absolute_lift, relative_lift and p_value of the return-visit rate (all null with an empty arm)."""
    x_t, n_t, x_c, n_c = t["returned"], t["closed_users"], c["returned"], c["closed_users"]
    if not (n_t and n_c):
        return {"absolute_lift": None, "relative_lift": None, "p_value": None}
    return {
        "absolute_lift": _interval(stats_math.rate_diff_interval(x_t, n_t, x_c, n_c)),
        "relative_lift": _interval(stats_math.relative_lift_interval(x_t, n_t, x_c, n_c), "ratio_minus_one"),
        "p_value": stats_math.two_proportion_p_value(x_t, n_t, x_c, n_c),
    }


def triggered_summary(arms: dict[str, dict[str, int]]) -> dict[str, Any]:
    """effect.triggered: the same comparison over the users who triggered (ghost unlocks in control)."""
    return {
        "arms": {name: _arm_figures(arm) for name, arm in arms.items()},
        **_lifts(arms["treatment"], arms["control"]),
    }


def _cuped_arm(arm: dict[str, int]) -> stats_math.CupedArm:
    # y is return visits per user (the sums carry Σ pre·visits), x the pre-period visits
    return stats_math.CupedArm(
        n=arm["closed_users"],
        sum_y=arm["visits"],
        sum_y2=arm["visits_sq"],
        sum_x=arm["pre"],
        sum_x2=arm["pre_sq"],
        sum_xy=arm["pre_visits"],
    )


def cuped_summary(arms: dict[str, dict[str, int]]) -> dict[str, Any] | None:
    """effect.cuped from sums with pre, pre_sq, pre_visits; None without them or with under 2 users an arm."""
    if not all("pre_visits" in arm for arm in arms.values()):
        return None
    result = stats_math.cuped_diff_interval(_cuped_arm(arms["treatment"]), _cuped_arm(arms["control"]))
    if result is None:
        return None
    return {
        "metric": "visits_per_user",
        "absolute_lift": _interval((result.estimate, result.ci_low, result.ci_high), "visits_per_user"),
        "theta": result.theta,
        "variance_reduction": result.variance_reduction,
    }


def always_valid_summary(t: dict[str, int], c: dict[str, int]) -> dict[str, Any]:
    """effect.always_valid; safe_to_act is set once the status is known."""
    sequence = None
    if t["closed_users"] and c["closed_users"]:
        sequence = stats_math.always_valid_rate_diff(t["returned"], t["closed_users"], c["returned"], c["closed_users"])
    return {
        "method": "asymptotic_confidence_sequence",
        "planned_users": stats_math.PLANNED_USERS,
        "absolute_lift": _interval(sequence),
        "safe_to_act": False,
    }


def effect_summary(
    arms: dict[str, dict[str, int]],
    holdout_percent: int,
    triggered: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """The effect block from per-arm sums (plain function: tested without a database)."""
    t, c = arms["treatment"], arms["control"]
    summary: dict[str, Any] = {
        "metric": "return_visit_rate",
        "arms": {name: _arm_figures(arm) for name, arm in arms.items()},
        **_lifts(t, c),
    }
    n_t, n_c = t["closed_users"], c["closed_users"]
    if n_t and n_c:
        summary["minimum_detectable_effect"] = stats_math.minimum_detectable_effect(c["returned"] / n_c, n_t, n_c)
        visits = stats_math.mean_diff_interval(t["visits"], t["visits_sq"], n_t, c["visits"], c["visits_sq"], n_c)
        summary["visits_per_user_diff"] = _interval(visits, "visits_per_user")
        # extra visits the offer brought among treated users whose window closed
        summary["incremental_visits"] = visits[0] * n_t if visits else None
    else:
        summary.update(minimum_detectable_effect=None, visits_per_user_diff=None, incremental_visits=None)
    summary["srm"] = {
        "p_value": stats_math.srm_p_value(t["users"], c["users"], holdout_percent),
        "alert": stats_math.srm_alert(t["users"], c["users"], holdout_percent),
        "expected_control_share": holdout_percent / 100,
        "observed_control_share": _rate(c["users"], t["users"] + c["users"]),
    }
    summary["triggered"] = triggered_summary(triggered) if triggered is not None else None
    summary["cuped"] = cuped_summary(arms)
    summary["always_valid"] = always_valid_summary(t, c)
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


def with_status(effect: dict[str, Any]) -> str:
    """The status, and the always-valid verdict that depends on it: safe to act once ready and the
    always-valid interval excludes 0."""
    status = stats_status(effect)
    lift = effect["always_valid"]["absolute_lift"]
    effect["always_valid"]["safe_to_act"] = bool(
        status == "ready" and lift is not None and (lift["ci_low"] > 0 or lift["ci_high"] < 0)
    )
    return status


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

    arms, triggered = await _effect_sums(session, campaign, today)
    effect = effect_summary(arms, campaign.holdout_percent, triggered)
    effect["attribution_days"] = campaign.attribution_days

    redeemed = [(float(m), int(n), 0) for m, n in await session.execute(REDEEM_MINUTES_SQL, params)]
    expired = {int(w): int(n) for w, n in await session.execute(UNREDEEMED_BY_WINDOW_SQL, params)}
    still_open = []
    for window, age, n in await session.execute(OPEN_UNLOCKS_SQL, params):
        still_open.append((float(age), 0, int(n)))
        expired[window] = expired.get(window, 0) - n
    censored = still_open + [(float(w), 0, n) for w, n in expired.items() if n > 0]
    survival = stats_math.kaplan_meier_grouped(redeemed + censored)
    curve = redeemed_share_curve(redeemed + censored)
    unlocks, net_redemptions = totals["unlock"], totals["redemption"] - totals["void"]

    names: dict[uuid.UUID, str] = (
        dict((await session.execute(VENUE_NAMES_SQL, {"ids": list(by_venue)})).all()) if by_venue else {}
    )
    satisfaction = await campaign_satisfaction(session, campaign.id, [(o.id, o.title) for o in campaign.offers])
    treatment_users = arms["treatment"]["users"]
    return {
        "campaign_id": str(campaign.id),
        "campaign_status": campaign.status,
        "status": with_status(effect),
        "generated_at": datetime.now().astimezone().isoformat(),
        "funnel": {
            **_funnel(totals),
            "unique_users": treatment_users + arms["control"]["users"],
            "exposures": {"treatment": treatment_users, "control": arms["control"]["users"]},
            "redemption_rate_of_unlocks": _rate(net_redemptions, unlocks),
            "redemptions_per_treatment_user": _rate(net_redemptions, treatment_users),
            "time_to_redeem_minutes": {
                "median": survival.median,
                "p75": survival.p75,
                "unlocks": survival.n,
                "redeemed": survival.events,
                "method": "kaplan_meier, unredeemed unlocks censored",
                "curve": [{"minutes": minutes, "redeemed_share": share} for minutes, share in curve],
            },
        },
        "effect": effect,
        "by_day": [{"day": d.isoformat(), **_funnel(m)} for d, m in sorted(by_day.items())],
        "by_venue": [
            {"venue_id": str(v), "name": names.get(v), **_funnel(m)}
            for v, m in sorted(by_venue.items(), key=lambda item: str(item[0]))
        ],
        "satisfaction": satisfaction,
    }


ARM_SUMS = ("users", "closed_users", "returned", "visits", "visits_sq")  # without the CUPED covariate sums


async def _effect_sums(
    session: AsyncSession, campaign: Campaign, today: date
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Per-arm sums (with the CUPED covariate sums) for intention to treat and for the triggered
    analysis."""
    sums = await effect_sums(session, campaign.id, campaign.attribution_days, today)
    itt, triggered = (
        {arm: asdict(s[arm]) for arm in ("treatment", "control")} for s in (sums["itt"], sums["triggered"])
    )
    return itt, triggered


def redeemed_share_curve(groups: Sequence[tuple[float, int, int]]) -> list[tuple[float, float]]:
    """The Kaplan-Meier curve of time to redeem as (minute, share of unlocks redeemed by then),
    from the same (time, redeemed, censored) rows as stats_math.kaplan_meier_grouped.

    A point is kept once the share has risen CURVE_RESOLUTION since the last one kept, and where
    it first reaches 50% and 75%, so the curve crosses those at exactly the median and p75 that
    kaplan_meier_grouped reports (tests prove it); the last rise is always kept."""
    merged: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    for time, events, censored in groups:
        merged[time][0] += events
        merged[time][1] += censored
    at_risk = sum(events + censored for events, censored in merged.values())
    survival, kept_share = 1.0, 0.0
    points: list[tuple[float, float]] = []
    pending: tuple[float, float] | None = None
    for time, (events, censored) in sorted(merged.items()):
        if events:
            survival *= 1.0 - events / at_risk
            pending = (time, 1.0 - survival)
            if pending[1] - kept_share >= CURVE_RESOLUTION or any(
                _reached(q, pending[1]) and not _reached(q, kept_share) for q in (0.5, 0.75)
            ):
                points.append(pending)
                kept_share, pending = pending[1], None
        at_risk -= events + censored
    if pending is not None:
        points.append(pending)
    return points


def _reached(quantile: float, share: float) -> bool:
    # The same tolerance as stats_math: S(t) is a product of factors, 0.5 can come out a hair above.
    return share >= quantile - 1e-12


@dataclass(frozen=True)
class UsersNeeded:
    """More analysed users (whose attribution window has closed) wanted in each arm."""

    treatment: int
    control: int


def users_to_minimum(effect: Effect) -> UsersNeeded:
    """How far each arm is from MIN_USERS_PER_ARM analysed users, below which the status
    stays below_min_data."""
    return UsersNeeded(
        treatment=max(0, MIN_USERS_PER_ARM - effect.arms.treatment.users_window_closed),
        control=max(0, MIN_USERS_PER_ARM - effect.arms.control.users_window_closed),
    )


def users_to_detect_observed_lift(effect: Effect) -> UsersNeeded | None:
    """More users per arm before a lift as large as the one observed so far would be detected
    with 80% power at the 5% level, or None when that cannot be said (no lift yet, a zero lift,
    or one that the current sizes already detect).

    The minimum detectable effect is proportional to sqrt(1/n_t + 1/n_c), so growing both arms by
    a factor f (keeping the holdout's share) divides it by sqrt(f): f = (MDE / |lift|)^2.
    """
    mde, lift = effect.minimum_detectable_effect, effect.absolute_lift
    if mde is None or lift is None or lift.estimate == 0 or mde <= abs(lift.estimate):
        return None
    factor = (mde / abs(lift.estimate)) ** 2
    n_t, n_c = effect.arms.treatment.users_window_closed, effect.arms.control.users_window_closed
    return UsersNeeded(treatment=math.ceil(n_t * factor) - n_t, control=math.ceil(n_c * factor) - n_c)


OFFER_COUNTS_SQL = text("""
    SELECT o.id,
           (SELECT count(*) FROM unlocks u WHERE u.offer_id = o.id)::bigint AS unlocks,
           (SELECT count(*) FROM redemptions r WHERE r.offer_id = o.id AND r.voided_at IS NULL)::bigint AS redemptions
    FROM offers o WHERE o.campaign_id = :campaign
""")


RULES: TypeAdapter[Rule] = TypeAdapter(Rule)


@dataclass(frozen=True)
class OfferFigures:
    offer_id: uuid.UUID
    title: str
    rule_type: str
    unlocks: int
    redemptions: int  # not voided
    budget: int  # unlocks the offer may make (a flash offer's first N users, else its total limit)
    remaining: int  # unlocks left in the budget


async def offer_figures(session: AsyncSession, campaign: Campaign) -> list[OfferFigures]:
    """Unlocks, redemptions and budget left of each of the campaign's offers, in the order they
    were added. Counted from the rows (on the offer indexes): the stats aggregates are kept by
    venue and day, not by offer."""
    counts = {row.id: row for row in await session.execute(OFFER_COUNTS_SQL, {"campaign": campaign.id})}
    remaining = await offer_remaining(session, [offer.id for offer in campaign.offers])
    return [
        OfferFigures(
            offer_id=offer.id,
            title=offer.title,
            rule_type=str(offer.rule.get("type", "")),
            unlocks=int(counts[offer.id].unlocks) if offer.id in counts else 0,
            redemptions=int(counts[offer.id].redemptions) if offer.id in counts else 0,
            budget=budget_for(RULES.validate_python(offer.rule), offer.total_limit),
            remaining=remaining.get(offer.id, 0),
        )
        for offer in campaign.offers
    ]


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


CSV_SUMMARY_COLUMNS = ["measure", "group", "value", "ci_low", "ci_high", "unit", "p_value", "users_analysed", "note"]
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
# Spreadsheets read a UTF-8 file without this mark in the machine's legacy code page (é, ø, å break).
CSV_BOM = "\ufeff"


# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_text(value: str | None) -> str | None:
    """Merchant-chosen text (a venue name) shown as text, never run as a formula."""
    return "'" + value if value and value.startswith(FORMULA_STARTS) else value


def _in_unit(fraction: float | None) -> float | None:
    """A rate or a lift (a fraction) in percent or percentage points, as people read them."""
    return None if fraction is None else round(fraction * 100, 4)


def _p_value(p: float | None) -> str | None:
    return None if p is None else f"{p:.4g}"


STATUS_NOTES = {
    "collecting": "no attribution window has closed yet",
    "below_min_data": f"fewer than {MIN_USERS_PER_ARM} analysed users in an arm: intervals too wide to act on",
    "srm_alert": "the split between treatment and control is broken: do not trust the effect",
    "ready": "enough analysed users in both arms",
}
LIFT_MISSING = {
    "absolute_lift": "not yet, an arm has no analysed users",
    "relative_lift": "not shown, the control rate is too small to divide by (or nobody analysed yet)",
}


def csv_summary_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The effect in the units people read: each arm's return-visit rate in percent, the absolute
    lift in percentage points and the relative lift in percent, with 95% intervals and the p-value.
    Every cell is a fixed label or a number, so nothing here can run as a formula."""
    effect = stats["effect"]
    window = f"return visit within {effect['attribution_days']} days"
    status = stats["status"]
    rows: list[dict[str, Any]] = [{"measure": "status", "value": status, "note": STATUS_NOTES[status]}]
    for arm_name, arm in effect["arms"].items():
        ci = arm["return_visit_rate_ci"] or {}
        rows.append(
            {
                "measure": "return_visit_rate",
                "group": arm_name,
                "value": _in_unit(arm["return_visit_rate"]),
                "ci_low": _in_unit(ci.get("ci_low")),
                "ci_high": _in_unit(ci.get("ci_high")),
                "unit": "percent",
                "users_analysed": arm["users_window_closed"],
                "note": window,
            }
        )
    lifts = (
        ("absolute_lift", "percentage points", "treatment rate minus control rate"),
        ("relative_lift", "percent", "treatment rate / control rate - 1"),
    )
    for measure, unit, meaning in lifts:
        lift = effect[measure] or {}
        shown = bool(lift)
        rows.append(
            {
                "measure": measure,
                "group": "treatment vs control",
                "value": _in_unit(lift.get("estimate")),
                "ci_low": _in_unit(lift.get("ci_low")),
                "ci_high": _in_unit(lift.get("ci_high")),
                "unit": unit,
                "p_value": _p_value(effect["p_value"]) if shown else None,
                "note": meaning if shown else f"{meaning}: {LIFT_MISSING[measure]}",
            }
        )
    return rows


def stats_csv(stats: dict[str, Any]) -> str:
    """For spreadsheets: the effect summary, a blank line, then the by-day and by-venue
    breakdowns as one table. Starts with a byte-order mark, so spreadsheets read it as UTF-8."""
    out = io.StringIO()
    out.write(CSV_BOM)
    summary = csv.DictWriter(out, fieldnames=CSV_SUMMARY_COLUMNS)
    summary.writeheader()
    summary.writerows(csv_summary_rows(stats))
    out.write("\r\n")  # csv's own line ending: the blank line between the two tables
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in stats["by_day"]:
        writer.writerow({"breakdown": "day", "key": row["day"], **row})
    for row in stats["by_venue"]:
        writer.writerow({"breakdown": "venue", "key": row["venue_id"], **row, "name": _spreadsheet_text(row["name"])})
    return out.getvalue()
