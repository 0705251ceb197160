"""The typed shape of a campaign's stats (what offers.stats.campaign_stats returns), for the API's
contract and for the console, which reads the same figures.

Rates and shares are fractions from 0 to 1 (0.312 is 31.2%); lifts are differences of such
fractions (0.021 is 2.1 percentage points) or ratios minus 1 (0.07 is +7%). Every interval is a
95% interval. Unknown keys are refused, so a figure added to the stats without its type here
fails the tests instead of leaving the contract behind.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

StatsStatus = Literal["collecting", "below_min_data", "ready", "srm_alert"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Strict):
    estimate: float
    ci_low: float = Field(description="lower end of the 95% interval")
    ci_high: float = Field(description="upper end of the 95% interval")


class RateInterval(_Strict):
    ci_low: float = Field(description="lower end of the 95% Wilson interval")
    ci_high: float = Field(description="upper end of the 95% Wilson interval")


class ArmEffect(_Strict):
    users_exposed: int = Field(description="users assigned to this arm so far")
    users_window_closed: int = Field(description="of those, users whose attribution window has closed (analysed)")
    returned_users: int = Field(description="analysed users with at least one return visit in their window")
    return_visit_rate: float | None = Field(
        description="returned_users / users_window_closed; null with no one analysed"
    )
    return_visit_rate_ci: RateInterval | None
    visits_per_user: float | None = Field(description="return visits per analysed user")


class Arms(_Strict):
    treatment: ArmEffect = Field(description="users who can unlock the campaign's offers")
    control: ArmEffect = Field(description="the randomized holdout: recorded like everyone else, never unlocks")


class SampleRatioCheck(_Strict):
    p_value: float = Field(description="chi-square test of the arm sizes against the configured holdout")
    alert: bool = Field(description="p < 0.001 with at least 8 users expected per arm: the split is broken")
    expected_control_share: float = Field(description="holdout_percent / 100")
    observed_control_share: float | None = Field(description="control users / all exposed users; null with none")


class Effect(_Strict):
    metric: Literal["return_visit_rate"]
    arms: Arms
    absolute_lift: Interval | None = Field(
        description="treatment rate minus control rate (a fraction: 0.021 is 2.1 percentage points), "
        "Newcombe interval; null until both arms have analysed users"
    )
    relative_lift: Interval | None = Field(
        description="treatment rate / control rate - 1 (0.07 is +7%), delta-method interval on the log ratio; "
        "null when the control rate is too small to divide by (under 1% or fewer than 5 returning users)"
    )
    p_value: float | None = Field(description="two-sided pooled two-proportion z-test of no effect")
    minimum_detectable_effect: float | None = Field(
        description="smallest absolute lift (a fraction) these arm sizes detect with 80% power at the 5% level"
    )
    visits_per_user_diff: Interval | None = Field(description="return visits per user, treatment minus control (Welch)")
    incremental_visits: float | None = Field(description="extra return visits among analysed treatment users")
    srm: SampleRatioCheck
    attribution_days: int = Field(description="a return visit counts within this many days of the first exposure")


class CurvePoint(_Strict):
    minutes: float = Field(description="minutes after the unlock")
    redeemed_share: float = Field(description="Kaplan-Meier share of unlocks redeemed by then (1 - S(t))")


class TimeToRedeem(_Strict):
    median: float | None = Field(description="minutes by which half of the unlocks are redeemed; null if never")
    p75: float | None = Field(description="minutes by which three quarters are redeemed; null if never")
    unlocks: int
    redeemed: int
    method: str
    curve: list[CurvePoint] = Field(
        description="the Kaplan-Meier curve: one point per minute in which redemptions happened; "
        "rises of under 0.1 percentage point are merged into the next point"
    )


class Exposures(_Strict):
    treatment: int
    control: int


class FunnelCounts(_Strict):
    checkins_accepted: int
    checkins_rejected: int
    rejected_by_reason: dict[str, int] = Field(description="rejected check-ins by plausibility reason")
    exposed_treatment: int = Field(description="users first exposed here (or on this day), treatment arm")
    exposed_control: int = Field(description="users first exposed here (or on this day), control arm")
    unlocks: int
    redemptions: int = Field(description="redemptions not voided")
    voids: int


class Funnel(FunnelCounts):
    unique_users: int = Field(description="exposed users, both arms")
    exposures: Exposures
    redemption_rate_of_unlocks: float | None
    redemption_rate_of_treatment_users: float | None
    time_to_redeem_minutes: TimeToRedeem


class DayFigures(FunnelCounts):
    day: date = Field(description="UTC day")


class VenueFigures(FunnelCounts):
    venue_id: uuid.UUID
    name: str | None


class RatingCount(_Strict):
    rating: int = Field(ge=1, le=7)
    count: int


class ReplyMinutes(_Strict):
    median: float | None = Field(description="minutes from the customer's first message to the first reply, median")
    p90: float | None = Field(description="the same, 90th percentile; both null until a conversation is answered")


class SatisfactionFigures(_Strict):
    ratings: int = Field(description="feedback given on redeemed offers")
    rating_mean: float | None = Field(description="mean rating, 1 to 7; null without ratings")
    rating_distribution: list[RatingCount] = Field(description="how many gave each rating, 1 to 7, all seven listed")
    conversations: int = Field(description="conversations customers opened about their unlocks")
    answered: int = Field(description="of those, conversations the merchant has replied to at least once")
    answered_share: float | None = Field(description="answered / conversations; null without conversations")
    first_reply_minutes: ReplyMinutes = Field(description="time to the merchant's first reply, answered ones only")
    open_over_24h: int = Field(description="open conversations whose customer has waited more than 24 hours")


class VenueSatisfaction(SatisfactionFigures):
    venue_id: uuid.UUID = Field(description="the venue where the offer was unlocked")
    name: str | None


class OfferSatisfaction(SatisfactionFigures):
    offer_id: uuid.UUID
    title: str


class Satisfaction(SatisfactionFigures):
    by_venue: list[VenueSatisfaction] = Field(description="venues with ratings or conversations")
    by_offer: list[OfferSatisfaction] = Field(
        description="offers with ratings or conversations, as the campaign orders them"
    )


class CampaignStats(_Strict):
    """GET /v1/campaigns/{id}/stats."""

    campaign_id: uuid.UUID
    campaign_status: Literal["draft", "active", "paused", "ended"]
    status: StatsStatus = Field(
        description="collecting: no attribution window has closed yet; below_min_data: fewer than 50 analysed "
        "users in an arm; srm_alert: the split contradicts the holdout, do not trust the effect; ready"
    )
    generated_at: str = Field(json_schema_extra={"format": "date-time"})
    funnel: Funnel
    effect: Effect
    by_day: list[DayFigures]
    by_venue: list[VenueFigures]
    satisfaction: Satisfaction = Field(description="what customers rated and wrote, and how the merchant answered")
