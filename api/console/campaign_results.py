"""One campaign's results in the console: what the stats say, in plain words and with units.

Every figure comes from offers.stats.campaign_stats, the function behind GET
/v1/campaigns/{id}/stats, serialized through the same schema, so the page and the API cannot
disagree. Each figure the API also reports carries data-metric (its dotted path in the stats
JSON) and data-value (that JSON value), which the tests compare with the API. The figures per
offer come from offers.stats.offer_figures, and the CSV download is the API's own CSV.

Readers: a merchant's admin and marketers; staff get the 403 page, and another merchant's or a
missing campaign the 404 page.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.console.pages import forbidden, not_found, render
from api.console.session import ConsoleUser
from api.deps import Session, SettingsDep, merchant_of
from api.routes.stats import csv_response
from core.auth import Role
from core.errors import NotFound
from core.settings import Settings
from geo.venues import Venue
from offers.campaigns import Campaign, get_campaign
from offers.power import DEFAULT_LIFT_PP, power_for_campaign
from offers.stats import (
    MIN_USERS_PER_ARM,
    UsersNeeded,
    campaign_stats,
    offer_figures,
    users_to_detect_observed_lift,
    users_to_minimum,
)
from offers.stats_schema import CampaignStats, Effect

router = APIRouter(prefix="/dashboard", include_in_schema=False)

READERS = frozenset({Role.MERCHANT_ADMIN, Role.MARKETER})
MINUS = "\u2212"  # a real minus sign: "-2.1" reads as a hyphen in running text


# --------------------------------------------------------------------------- the banner


BannerKind = Literal["srm_alert", "no_holdout", "collecting", "below_min_data", "ready"]


@dataclass(frozen=True)
class BannerFacts:
    """What the status banner says, decided from the stats alone (the wording is in the template)."""

    kind: BannerKind
    style: Literal["alert", "waiting", "ready"]
    to_minimum: UsersNeeded  # more analysed users per arm before the status can be ready
    to_minimum_in_all: int  # the same as new users of both arms, at the configured holdout share
    to_detect: UsersNeeded | None  # more per arm before a lift the size of today's would be detected
    first_results_on: date | None  # collecting: the day the first exposed users' window closes


def banner_facts(stats: CampaignStats, today: date) -> BannerFacts:
    effect = stats.effect
    to_minimum = users_to_minimum(effect)
    kind: BannerKind
    if stats.status == "srm_alert":
        kind = "srm_alert"
    elif effect.srm.expected_control_share == 0:
        kind = "no_holdout"  # nobody is held out, so nothing to compare with, ever
    elif stats.status == "collecting":
        kind = "collecting"
    elif stats.status == "below_min_data":
        kind = "below_min_data"
    else:
        kind = "ready"
    style: Literal["alert", "waiting", "ready"] = (
        "alert" if kind == "srm_alert" else "ready" if kind == "ready" else "waiting"
    )
    return BannerFacts(
        kind=kind,
        style=style,
        to_minimum=to_minimum,
        to_minimum_in_all=_users_in_all(to_minimum, effect.srm.expected_control_share),
        to_detect=users_to_detect_observed_lift(effect),
        first_results_on=_first_results_on(stats, today),
    )


def _users_in_all(needed: UsersNeeded, control_share: float) -> int:
    """New users of both arms that bring each arm its share of them: with a 10% holdout,
    30 more holdout users take about 300 new users in all."""
    if not 0 < control_share < 1:
        return needed.treatment + needed.control
    return math.ceil(max(needed.control / control_share, needed.treatment / (1 - control_share)))


def _first_results_on(stats: CampaignStats, today: date) -> date | None:
    """A user is analysed once exposure day + attribution_days < today (UTC): the first exposed
    users' windows close the day after that."""
    exposed_days = [row.day for row in stats.by_day if row.exposed_treatment or row.exposed_control]
    if not exposed_days:
        return None
    return max(min(exposed_days) + timedelta(days=stats.effect.attribution_days + 1), today)


# --------------------------------------------------------------------------- the effect in words


Verdict = Literal["not_yet", "rose", "fell", "unclear"]


def effect_verdict(effect: Effect) -> Verdict:
    """Read from the 95% interval of the absolute lift: a direction only when it excludes zero."""
    lift = effect.absolute_lift
    if lift is None:
        return "not_yet"
    if lift.ci_low > 0:
        return "rose"
    if lift.ci_high < 0:
        return "fell"
    return "unclear"


@dataclass(frozen=True)
class Scale:
    """A linear axis for the server-drawn interval charts (SVG), in the unit shown (%, pp)."""

    low: float
    high: float
    ticks: list[float]

    def x(self, value: float, width: float) -> float:
        return (value - self.low) / (self.high - self.low) * width


def _nice_step(span: float) -> float:
    """A round tick step giving about 4-8 ticks over span."""
    raw = span / 5
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)


def rate_scale(effect: Effect) -> Scale:
    """0 to a round value above the highest interval end of either arm, in percent."""
    highs = [
        arm.return_visit_rate_ci.ci_high * 100
        for arm in (effect.arms.treatment, effect.arms.control)
        if arm.return_visit_rate_ci is not None
    ]
    top = max(highs, default=100.0) or 1.0
    step = _nice_step(top)
    high = math.ceil(top / step) * step
    return Scale(0.0, high, [i * step for i in range(round(high / step) + 1)])


def lift_scale(effect: Effect) -> Scale | None:
    """Symmetric around zero (no effect), wide enough for the interval, in percentage points."""
    lift = effect.absolute_lift
    if lift is None:
        return None
    reach = max(abs(lift.ci_low), abs(lift.ci_high), 1e-4) * 100
    step = _nice_step(2 * reach)
    bound = math.ceil(reach / step) * step
    count = round(bound / step)
    return Scale(-bound, bound, [i * step for i in range(-count, count + 1)])


# --------------------------------------------------------------------------- figures on the page


def _signed(text: str) -> str:
    return text.replace("-", MINUS)


def format_value(value: Any, kind: str) -> str:
    """A stats value as people read it; rates and lifts are fractions in the stats."""
    if value is None:
        return "—"
    match kind:
        case "count":
            return f"{value:,}"
        case "rate":  # 0.312 -> 31.2%
            return f"{value * 100:.1f}%"
        case "rate_number":  # an interval end next to a "%" written once
            return f"{value * 100:.1f}"
        case "whole_percent":  # a configured share: 0.1 -> 10%
            return f"{value * 100:g}%"
        case "pp":  # an absolute lift, 0.021 -> +2.1 pp
            return _signed(f"{value * 100:+.1f} pp")
        case "pp_number":
            return _signed(f"{value * 100:+.1f}")
        case "pp_size":  # a size, never signed (the minimum detectable effect)
            return f"{value * 100:.1f} pp"
        case "relative":  # a relative lift, 0.07 -> +7.0%
            return _signed(f"{value * 100:+.1f}%")
        case "relative_number":
            return _signed(f"{value * 100:+.1f}")
        case "p":  # with its relation: "p < 0.001" is not "p = 0.000"
            return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"
        case "decimal":
            return _signed(f"{value:,.2f}")
        case "signed_decimal":  # a difference: +0.09
            return _signed(f"{value:+,.2f}")
        case "signed":  # an estimated count: +65 visits
            return _signed(f"{value:+,.0f}")
        case "minutes":
            return format_minutes(float(value))
        case _:
            return str(value)


def format_minutes(minutes: float) -> str:
    """12 min, 1 h 35 min, 2 d 3 h."""
    whole = round(minutes)
    if whole < 60:
        return f"{whole} min"
    if whole < 24 * 60:
        hours, rest = divmod(whole, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, rest = divmod(whole, 24 * 60)
    return f"{days} d {rest // 60} h" if rest >= 60 else f"{days} d"


def about(n: int) -> str:
    """A projected number of users, to two significant digits: 1,404 -> 1,400 (exact below 100)."""
    if n < 100:
        return f"{n:,}"
    magnitude = 10 ** (len(str(n)) - 2)
    return f"{round(n / magnitude) * magnitude:,}"


def tick_label(value: float) -> str:
    """An axis tick: 2.5, 10, −5 (no trailing zeros, a real minus)."""
    return _signed(f"{value:g}") if value else "0"


def value_at(document: Any, path: str) -> Any:
    """The value at a dotted path ("funnel.unlocks", "by_venue.0.name") of the stats JSON."""
    for part in path.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


class Figures:
    """The template's access to the stats JSON: every figure it prints is tagged with its path
    and JSON value, so the page can be checked against the API figure by figure."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def attrs(self, path: str) -> Markup:
        value = json.dumps(value_at(self.document, path))
        return Markup('data-metric="{}" data-value="{}"').format(path, value)

    def __call__(self, path: str, kind: str = "count", none: str = "—") -> Markup:
        value = value_at(self.document, path)
        text = none if value is None else format_value(value, kind)
        return Markup('<span class="fig" {}>{}</span>').format(self.attrs(path), text)

    def value(self, path: str) -> Any:
        return value_at(self.document, path)


# Why a check-in was refused, in the words of the plausibility checks (README, "Plausibility").
def rejection_reasons(settings: Settings) -> dict[str, str]:
    return {
        "mocked_location": "the phone reported a simulated location (or 0 m accuracy)",
        "future_timestamp": "the fix was timed in the future",
        "stale": f"the fix was older than {format_minutes(settings.max_fix_age_s / 60)} on arrival",
        "accuracy_too_low": f"GPS accuracy worse than {settings.max_accuracy_m:,.0f} m",
        "venue_mismatch": "the app named another venue than the one at the position",
        "outside_geofence": "outside the venue's fence",
        "too_fast": "impossibly fast travel from the user's previous check-in",
        "too_frequent": f"the same user at the same venue within {format_minutes(settings.checkin_cooldown_s / 60)}",
    }


RULE_NAMES = {
    "every_checkin": "every check-in",
    "first_checkin": "first visit",
    "nth_checkin": "every n-th visit",
    "loyalty": "loyalty",
    "flash": "flash, first N users",
    "group": "group",
    "top_visitor": "top visitor",
}


# --------------------------------------------------------------------------- the map's venues


async def venue_fences(session: AsyncSession, merchant_id: uuid.UUID, venue_ids: list[uuid.UUID]) -> list[Venue]:
    """The fences to draw: the campaign's venues and any that have figures (a venue removed from
    the campaign keeps its history); deleted venues too, whose check-ins still count."""
    if not venue_ids:
        return []
    query = select(Venue).where(Venue.id.in_(venue_ids), Venue.merchant_id == merchant_id).order_by(Venue.name)
    return list(await session.scalars(query))


def script_data(document: dict[str, Any], campaign: Campaign, fences: list[Venue], tile_url: str) -> dict[str, Any]:
    """What campaign.js needs beyond the figures its charts carry in data-value: the fences with
    each venue's row of by_venue, where the curve's quantiles sit, and the time axis's reach."""
    rows = {row["venue_id"]: index for index, row in enumerate(document["by_venue"])}
    ttr = document["funnel"]["time_to_redeem_minutes"]
    return {
        "median": ttr["median"],
        "p75": ttr["p75"],
        # How long a code could take: the curve's axis runs to the longest redemption window.
        "horizon_minutes": max((offer.redeem_within_minutes for offer in campaign.offers), default=60),
        "tile_url": tile_url,
        "venues": [
            {
                "id": str(venue.id),
                "name": venue.name,
                "deleted": venue.deleted_at is not None,
                "geofence": venue.geofence,
                "row": rows.get(str(venue.id)),  # its index in by_venue; None before its first check-in
                "figures": document["by_venue"][rows[str(venue.id)]] if str(venue.id) in rows else None,
            }
            for venue in fences
        ],
    }


# --------------------------------------------------------------------------- routes


@router.get("/campaigns/{campaign_id:uuid}")
async def campaign_results(
    request: Request, campaign_id: uuid.UUID, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> HTMLResponse:
    if principal.role not in READERS:
        return forbidden(request, principal)
    merchant_id = merchant_of(principal)
    now = datetime.now(UTC)
    today = now.date()
    try:
        # First: it fixes the transaction's snapshot, so every figure below agrees with it.
        raw = await campaign_stats(session, merchant_id, campaign_id, today)
    except NotFound:
        return not_found(request, principal)
    campaign = await get_campaign(session, merchant_id, campaign_id)
    stats = CampaignStats.model_validate(raw)
    document = stats.model_dump(mode="json")  # exactly what the API sends
    offers = await offer_figures(session, campaign)
    power = (
        None
        if campaign.status == "ended"
        else await power_for_campaign(session, merchant_id, campaign_id, DEFAULT_LIFT_PP, today)
    )
    with_figures = {row.venue_id for row in stats.by_venue}
    fences = await venue_fences(session, merchant_id, sorted(set(campaign.venue_ids) | with_figures))
    return render(
        request,
        "campaign.html",
        principal,
        campaign=campaign,
        stats=stats,
        fig=Figures(document),
        banner=banner_facts(stats, today),
        verdict=effect_verdict(stats.effect),
        rates=rate_scale(stats.effect),
        lifts=lift_scale(stats.effect),
        offers=offers,
        power=power,
        rule_names=RULE_NAMES,
        reasons=rejection_reasons(settings),
        venue_names={str(venue.id): venue.name for venue in fences},
        min_users=MIN_USERS_PER_ARM,
        chart_data=script_data(document, campaign, fences, settings.map_tile_url or ""),
        now=now,
        tick=tick_label,
        about=about,
        can_edit=principal.role == Role.MERCHANT_ADMIN,
    )


@router.get("/campaigns/{campaign_id:uuid}/stats.csv")
async def campaign_results_csv(
    request: Request, campaign_id: uuid.UUID, principal: ConsoleUser, session: Session
) -> Response:
    """The API's CSV (GET /v1/campaigns/{id}/stats?format=csv) with the console's session."""
    if principal.role not in READERS:
        return forbidden(request, principal)
    try:
        stats = await campaign_stats(session, merchant_of(principal), campaign_id, datetime.now(UTC).date())
    except NotFound:
        return not_found(request, principal)
    return csv_response(stats, campaign_id)
