"""The effect methods of issue 13 against simulated campaigns with a known truth (numpy, fixed
seeds): intention to treat, triggered, CUPED and always-valid intervals, and the power plan.
Each configuration simulates at least 200 campaigns and runs in a few seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import effect_simulation as sim
from offers import stats, stats_math

CONTROL_SHARE = 0.3


def test_itt_and_cuped_intervals_cover_the_truth_without_bias_and_cuped_is_narrower():
    rng = np.random.default_rng(20261203)
    delta = 0.06
    truth = sim.true_lift(delta)
    t, c = sim.simulate_arms(rng, campaigns=1000, users=3000, control_share=CONTROL_SHARE, delta=delta)
    itt = sim.newcombe(t, c)
    cuped, reduction = sim.cuped(t, c)
    for intervals in (itt, cuped):
        assert 0.93 <= intervals.covers(truth).mean() <= 0.97
        assert abs(intervals.estimate.mean() - truth) < 0.002  # under 0.2 percentage points
    # pre-period visits predict return visits here, so CUPED's interval is at least 15% narrower
    assert cuped.width.mean() <= 0.85 * itt.width.mean()
    assert reduction.mean() > 0.25


def test_cuped_without_a_useful_covariate_stays_honest():
    """With a covariate unrelated to the outcome, theta is near 0 and the interval is the plain one."""
    rng = np.random.default_rng(7)
    t, c = sim.simulate_arms(rng, campaigns=300, users=2000, control_share=CONTROL_SHARE, delta=0.0)
    shuffled = [sim.ArmData(a.n, a.returned, a.pre, a.pre_sq, a.pre * a.returned / np.maximum(a.n, 1)) for a in (t, c)]
    cuped, reduction = sim.cuped(*shuffled)
    assert 0.93 <= cuped.covers(0.0).mean() <= 0.97
    assert abs(reduction.mean()) < 0.02


@pytest.mark.parametrize(("trigger_share", "users"), [(0.1, 3000), (0.5, 1000)])
def test_triggered_intervals_cover_the_triggered_effect_without_bias(trigger_share, users):
    rng = np.random.default_rng(13)
    lift = 0.1
    _, triggered = sim.triggered_counts(rng, 1000, users, CONTROL_SHARE, trigger_share, 0.3, lift)
    x_t, n_t, x_c, n_c = triggered
    rows = np.array([stats_math.rate_diff_interval(*map(int, row)) for row in zip(x_t, n_t, x_c, n_c, strict=True)])
    estimate, low, high = rows.T
    assert 0.93 <= ((low <= lift) & (lift <= high)).mean() <= 0.97
    assert abs(estimate.mean() - lift) < 0.002


def _users_for_power(rng: np.random.Generator, analysis: int, grid: list[int]) -> int:
    """Smallest exposed-user count in grid at which the analysis (0: ITT, 1: triggered) detects the
    effect in at least 80% of 300 simulated campaigns."""
    for users in grid:
        counts = sim.triggered_counts(rng, 300, users, CONTROL_SHARE, 0.1, 0.3, 0.1)[analysis]
        if sim.detection_rate(*counts) >= 0.8:
            return users
    raise AssertionError("no grid size reached 80% power")


def test_on_a_loyalty_like_rule_triggered_analysis_needs_at_least_30_percent_fewer_users():
    """10% of users trigger and only they are affected (+10 pp): the ITT effect is diluted to +1 pp."""
    rng = np.random.default_rng(42)
    grid = [int(1000 * 1.25**k) for k in range(25)]
    itt_users = _users_for_power(rng, 0, grid)
    triggered_users = _users_for_power(rng, 1, grid)
    assert triggered_users <= 0.7 * itt_users


def test_daily_looks_at_aa_campaigns_inflate_fixed_intervals_but_not_always_valid_ones():
    """400 A/A campaigns looked at every day for 28 days: a false positive is any day on which the
    interval excludes 0."""
    rng = np.random.default_rng(2023)
    campaigns, days, daily_users, rate = 400, 28, 80, 0.3
    n_c = rng.binomial(daily_users, CONTROL_SHARE, size=(campaigns, days))
    n_t = daily_users - n_c
    x_t, x_c = rng.binomial(n_t, rate), rng.binomial(n_c, rate)
    cum = [np.cumsum(a, axis=1) for a in (x_t, n_t, x_c, n_c)]
    fixed_alarm = np.zeros(campaigns, dtype=bool)
    valid_alarm = np.zeros(campaigns, dtype=bool)
    for i in range(campaigns):
        for day in range(days):
            a, b, c, d = (int(m[i, day]) for m in cum)
            low, high = stats_math.newcombe_diff_interval(a, b, c, d)
            fixed_alarm[i] |= low > 0 or high < 0
            sequence = stats_math.always_valid_rate_diff(a, b, c, d)
            assert sequence is not None
            valid_alarm[i] |= sequence[1] > 0 or sequence[2] < 0
    assert valid_alarm.mean() <= 0.05
    assert fixed_alarm.mean() > 0.05


def test_always_valid_intervals_are_wider_than_fixed_ones_and_narrowest_near_the_planned_size():
    fixed_low, fixed_high = stats_math.newcombe_diff_interval(330, 1000, 300, 1000)
    estimate, low, high = stats_math.always_valid_rate_diff(330, 1000, 300, 1000) or (0, 0, 0)
    assert estimate == pytest.approx(0.03)
    assert low < fixed_low and high > fixed_high
    # the ratio to the fixed width is smallest for n near PLANNED_USERS
    ratios = {
        n: stats_math.confidence_sequence_radius(1.0 / n, n) / (1.96 * math.sqrt(1.0 / n)) for n in (200, 2000, 20000)
    }
    assert ratios[2000] < ratios[200] and ratios[2000] < ratios[20000]


def test_cuped_from_sums_matches_a_regression_on_the_rows():
    """The CUPED lift equals the treatment coefficient of y ~ 1 + treatment + x (pooled slope)
    within a hair, as it should for a within-arm pooled theta."""
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.poisson(3, n).astype(float)
    treat = rng.random(n) < 0.7
    y = 0.5 * x + 0.4 * treat + rng.normal(0, 1, n)
    arms = [
        stats_math.CupedArm(
            int(m.sum()), y[m].sum(), (y[m] ** 2).sum(), x[m].sum(), (x[m] ** 2).sum(), (x[m] * y[m]).sum()
        )
        for m in (treat, ~treat)
    ]
    result = stats_math.cuped_diff_interval(arms[0], arms[1])
    assert result is not None
    design = np.column_stack([np.ones(n), treat, x])
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    assert result.estimate == pytest.approx(coefficients[1], abs=1e-9)
    assert result.theta == pytest.approx(coefficients[2], abs=1e-9)
    assert result.ci_low < 0.4 < result.ci_high


def test_power_plan_matches_the_normal_approximation_and_simulation():
    plan = stats_math.power_plan(0.3, 0.02, 0.3, daily_new_users=200, attribution_days=7)
    z = 1.959963984540054 + 0.8416212335729143
    total = z * z * (0.3 * 0.7 / 0.3 + 0.32 * 0.68 / 0.7) / 0.02**2
    assert plan.users_control == math.ceil(total * 0.3)
    assert plan.users_treatment == math.ceil(total * 0.7)
    assert plan.days == math.ceil((plan.users_control + plan.users_treatment) / 200) + 8
    # at the planned sizes, a +2 pp lift is detected about 80% of the time
    rng = np.random.default_rng(5)
    x_t = rng.binomial(plan.users_treatment, 0.32, 400)
    x_c = rng.binomial(plan.users_control, 0.3, 400)
    power = sim.detection_rate(x_t, np.full(400, plan.users_treatment), x_c, np.full(400, plan.users_control))
    assert 0.74 <= power <= 0.86
    assert stats_math.power_plan(0.3, 0.02, 0.3, 0, 7).days is None


def _arm(users, closed, returned, visits, visits_sq, **covariates):
    return {
        "users": users,
        "closed_users": closed,
        "returned": returned,
        "visits": visits,
        "visits_sq": visits_sq,
        **covariates,
    }


def test_the_effect_block_carries_triggered_cuped_and_always_valid_figures():
    itt = {
        "treatment": _arm(700, 650, 260, 400, 900, pre=1300, pre_sq=5200, pre_visits=1500),
        "control": _arm(300, 280, 90, 130, 280, pre=560, pre_sq=2240, pre_visits=520),
    }
    triggered = {"treatment": _arm(100, 90, 50, 80, 200), "control": _arm(40, 38, 12, 15, 30)}
    effect = stats.effect_summary(itt, 30, triggered)
    effect["attribution_days"] = 7
    assert effect["absolute_lift"]["unit"] == "rate_difference"
    assert effect["relative_lift"]["unit"] == "ratio_minus_one"
    assert effect["triggered"]["absolute_lift"]["estimate"] == pytest.approx(50 / 90 - 12 / 38)
    assert effect["triggered"]["arms"]["control"]["users_window_closed"] == 38
    assert effect["cuped"]["metric"] == "visits_per_user" and 0 <= effect["cuped"]["variance_reduction"] < 1
    lift = effect["always_valid"]["absolute_lift"]
    assert lift["ci_low"] < effect["absolute_lift"]["ci_low"] and lift["ci_high"] > effect["absolute_lift"]["ci_high"]
    assert stats.with_status(effect) == "ready"
    assert effect["always_valid"]["safe_to_act"] is (lift["ci_low"] > 0)
    from offers.stats_schema import Effect

    Effect.model_validate(effect)
    # without triggered or covariate sums, both blocks are null
    plain = stats.effect_summary({k: {f: v[f] for f in stats.ARM_SUMS} for k, v in itt.items()}, 30)
    assert plain["triggered"] is None and plain["cuped"] is None
