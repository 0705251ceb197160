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


LiftUnit = Literal["rate_difference", "ratio_minus_one", "visits_per_user"]


class LiftInterval(_Strict):
    estimate: float
    ci_low: float = Field(description="lower end of the 95% interval")
    ci_high: float = Field(description="upper end of the 95% interval")
    unit: LiftUnit = Field(
        default="rate_difference",
        description="rate_difference: a difference of two shares of users (0.021 is 2.1 percentage points); "
        "ratio_minus_one: 0.07 is +7%; visits_per_user: return visits per analysed user",
    )


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


class TriggeredArms(_Strict):
    treatment: ArmEffect = Field(description="treatment users who met an offer's rule (unlocked), counted from then")
    control: ArmEffect = Field(
        description="control users who would have met it (their ghost unlock, recorded but never shown)"
    )


class TriggeredEffect(_Strict):
    """The same comparison restricted to users whose check-in triggered an offer's rule, in both
    arms; return visits counted after the triggering check-in. Sharper than intention to treat when
    few users trigger, but only about those who did."""

    arms: TriggeredArms
    absolute_lift: LiftInterval | None = Field(description="treatment rate minus control rate, Newcombe interval")
    relative_lift: LiftInterval | None = Field(description="treatment rate / control rate - 1, as in the effect block")
    p_value: float | None = Field(description="two-sided pooled two-proportion z-test of no effect")


class CupedEffect(_Strict):
    metric: Literal["visits_per_user"] = Field(
        description="the outcome adjusted: return visits per analysed user (the covariate sums are kept for it)"
    )
    absolute_lift: LiftInterval = Field(
        description="treatment minus control, CUPED-adjusted with each user's visits to the campaign venues in the "
        "28 days before exposure; normal 95% interval"
    )
    theta: float = Field(description="pooled cov(pre, outcome) / var(pre)")
    variance_reduction: float = Field(
        description="1 - variance of the adjusted lift / variance of the unadjusted one (0.3: a 30% smaller variance)"
    )


class AlwaysValid(_Strict):
    method: Literal["asymptotic_confidence_sequence"] = Field(
        description="Waudby-Smith et al. 2023: 95% coverage holds at every look at once, so the result may be "
        "checked every day"
    )
    planned_users: int = Field(description="analysed users (both arms) at which the sequence is tuned to be narrowest")
    absolute_lift: LiftInterval | None = Field(
        description="treatment rate minus control rate with its always-valid interval; null until both arms have "
        "analysed users"
    )
    safe_to_act: bool = Field(
        description="status is ready and the always-valid interval excludes 0: the effect can be acted on now"
    )


class Effect(_Strict):
    metric: Literal["return_visit_rate"]
    arms: Arms
    absolute_lift: LiftInterval | None = Field(
        description="treatment rate minus control rate (a fraction: 0.021 is 2.1 percentage points), "
        "Newcombe interval; null until both arms have analysed users"
    )
    relative_lift: LiftInterval | None = Field(
        description="treatment rate / control rate - 1 (0.07 is +7%), delta-method interval on the log ratio; "
        "null when the control rate is too small to divide by (under 1% or fewer than 5 returning users)"
    )
    p_value: float | None = Field(description="two-sided pooled two-proportion z-test of no effect")
    minimum_detectable_effect: float | None = Field(
        description="smallest absolute lift (a rate difference: 0.021 is 2.1 percentage points) these arm sizes "
        "detect with 80% power at the 5% level"
    )
    visits_per_user_diff: LiftInterval | None = Field(
        description="return visits per user, treatment minus control (Welch); unit visits_per_user"
    )
    incremental_visits: float | None = Field(description="extra return visits among analysed treatment users")
    srm: SampleRatioCheck
    attribution_days: int = Field(description="a return visit counts within this many days of the first exposure")
    triggered: TriggeredEffect | None = Field(
        default=None, description="the triggered analysis (users from their first unlock, real or ghost)"
    )
    cuped: CupedEffect | None = Field(
        default=None, description="CUPED-adjusted lift; null until both arms have 2 analysed users with covariates"
    )
    always_valid: AlwaysValid | None = Field(default=None, description="intervals safe to look at every day")


class CurvePoint(_Strict):
    minutes: float = Field(description="minutes after the unlock")
    redeemed_share: float = Field(description="Kaplan-Meier share of unlocks redeemed by then (1 - S(t))")


class TimeToRedeem(_Strict):
    median: float | None = Field(
        description="whole minutes (rounded down) by which half of the unlocks are redeemed: 0.0 means within the "
        "first minute of the unlock; null until half are redeemed"
    )
    p75: float | None = Field(
        description="whole minutes by which three quarters are redeemed; null while fewer than 75% of unlocks are "
        "redeemed by the Kaplan-Meier estimate (unredeemed ones are censored, so it may never get there)"
    )
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
    redemption_rate_of_unlocks: float | None = Field(description="redemptions / unlocks, a share from 0 to 1")
    redemptions_per_treatment_user: float | None = Field(
        description="redemptions / treatment users: a count per user, not a share (it exceeds 1 when users redeem "
        "more than once)"
    )
    time_to_redeem_minutes: TimeToRedeem


class DayFigures(FunnelCounts):
    day: date = Field(
        description="UTC day of the check-in each figure comes from (the phone's observed_at): check-ins and "
        "exposures on their own day, unlocks on the day of the check-in that earned them, redemptions and voids "
        "on the day of their unlock's check-in (so a day's redemptions may still grow after it)"
    )


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
        description="collecting: no user's attribution window has closed yet; below_min_data: fewer than 50 users "
        "whose window has closed in an arm (users_window_closed); srm_alert (checked first): the sample-ratio test "
        "p-value is below 0.001 with at least 8 users expected per arm, the split contradicts the holdout, do not "
        "trust the effect; ready: at least 50 users whose window has closed in each arm and no SRM alert"
    )
    generated_at: str = Field(json_schema_extra={"format": "date-time"})
    funnel: Funnel
    effect: Effect
    by_day: list[DayFigures]
    by_venue: list[VenueFigures]
    satisfaction: Satisfaction = Field(description="what customers rated and wrote, and how the merchant answered")


class UsersPerArm(_Strict):
    treatment: int
    control: int


class PowerPlan(_Strict):
    """GET /v1/campaigns/{id}/power."""

    users_per_arm: UsersPerArm = Field(
        description="analysed users each arm needs to detect lift_pp with 80% power at the 5% level (two-sided)"
    )
    days: int | None = Field(
        description="days at current traffic: to expose that many users, plus attribution_days for the last window "
        "to close; null when nobody checked in at the venues in the last 28 days"
    )
    daily_new_users: float = Field(
        description="distinct users with an accepted check-in at the campaign venues in the last 28 days, per day"
    )
    baseline_return_rate: float = Field(
        description="share of those users (window closed) who came back within attribution_days: the expected "
        "holdout rate; 0.25 when there is no history"
    )
    lift_pp: float = Field(description="the absolute lift to detect, in percentage points")
