"""offers.stats_math checked against statsmodels/scipy, at its edge cases, and by simulation
of campaigns whose true effect is known."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from offers.stats_math import (
    SurvivalSummary,
    _student_t_quantile,
    kaplan_meier_quantiles,
    mean_diff_interval,
    minimum_detectable_effect,
    newcombe_diff_interval,
    relative_lift_interval,
    srm_alert,
    srm_p_value,
    two_proportion_p_value,
    wilson_interval,
)

# (x_t, n_t, x_c, n_c): typical, small, extreme rates, unequal arms.
TWO_ARM_CASES = [
    (230, 1000, 20, 100),
    (5, 12, 1, 9),
    (0, 40, 3, 10),
    (40, 40, 9, 10),
    (0, 50, 0, 20),
    (17, 17, 6, 6),
    (1850, 9000, 160, 1000),
]


# --- cross-checks against statsmodels / scipy ---------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 50, 1000])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_statsmodels(n, confidence):
    for successes in sorted({0, 1, n // 3, n - 1, n}):
        expected = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
        assert wilson_interval(successes, n, confidence) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("x_t, n_t, x_c, n_c", TWO_ARM_CASES)
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_newcombe_matches_statsmodels(x_t, n_t, x_c, n_c, confidence):
    expected = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff", alpha=1 - confidence)
    assert newcombe_diff_interval(x_t, n_t, x_c, n_c, confidence) == pytest.approx(expected, abs=1e-12)


# Without variation (no successes, or all) statsmodels divides by zero; see test_p_value_edges.
@pytest.mark.parametrize("x_t, n_t, x_c, n_c", [c for c in TWO_ARM_CASES if 0 < c[0] + c[2] < c[1] + c[3]])
def test_p_value_matches_statsmodels_pooled_ztest(x_t, n_t, x_c, n_c):
    _, expected = proportions_ztest(np.array([x_t, x_c]), np.array([n_t, n_c]))
    assert two_proportion_p_value(x_t, n_t, x_c, n_c) == pytest.approx(expected, rel=1e-9)


def test_p_value_keeps_precision_far_in_the_tail():
    # z is about 8.9 here: the tail is ~4e-19, where 1 - cdf(z) would round to 0.
    p_value = two_proportion_p_value(600, 1000, 400, 1000)
    assert 0.0 < p_value < 1e-15
    _, expected = proportions_ztest(np.array([600, 400]), np.array([1000, 1000]))
    assert p_value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "x_t, n_t, x_c, n_c", [(230, 1000, 20, 100), (5, 12, 6, 9), (40, 40, 9, 10), (90, 900, 7, 110)]
)
def test_relative_lift_matches_statsmodels_log_ratio_interval(x_t, n_t, x_c, n_c):
    estimate, lower, upper = relative_lift_interval(x_t, n_t, x_c, n_c)
    ratio_lower, ratio_upper = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="log", compare="ratio")
    assert estimate == pytest.approx((x_t / n_t) / (x_c / n_c) - 1, rel=1e-12)
    assert (lower, upper) == pytest.approx((ratio_lower - 1, ratio_upper - 1), rel=1e-10)
    assert -1 < lower < estimate < upper
    # Exponentiating a symmetric log interval puts the estimate nearer the lower end.
    assert estimate - lower < upper - estimate


@pytest.mark.parametrize(
    "p_c, n_t, n_c, alpha, power",
    [(0.2, 1000, 1000, 0.05, 0.8), (0.05, 9000, 1000, 0.05, 0.9), (0.5, 300, 50, 0.01, 0.8)],
)
def test_mde_matches_statsmodels_power_solver(p_c, n_t, n_c, alpha, power):
    standardized = NormalIndPower().solve_power(effect_size=None, nobs1=n_t, alpha=alpha, power=power, ratio=n_c / n_t)
    # statsmodels also counts rejections in the wrong tail (probability < 1e-5 here), so
    # its standardized effect is a hair smaller than the one-tail formula's.
    expected = standardized * math.sqrt(p_c * (1 - p_c))
    assert minimum_detectable_effect(p_c, n_t, n_c, alpha, power) == pytest.approx(expected, rel=1e-4)


def test_mde_scales_with_inverse_square_root_of_sample_size():
    small = minimum_detectable_effect(0.2, 1000, 1000)
    assert minimum_detectable_effect(0.2, 4000, 4000) == pytest.approx(small / 2, rel=1e-12)
    assert small == pytest.approx((1.959964 + 0.841621) * math.sqrt(0.16 * 2 / 1000), rel=1e-6)


@pytest.mark.parametrize(
    "n_treatment, n_control, holdout_percent",
    [(900, 100, 10), (880, 120, 10), (8000, 2300, 20), (170, 30, 15), (51000, 9100, 15.5)],
)
def test_srm_p_value_matches_scipy_chisquare(n_treatment, n_control, holdout_percent):
    total = n_treatment + n_control
    expected_control = total * holdout_percent / 100
    expected = stats.chisquare([n_treatment, n_control], f_exp=[total - expected_control, expected_control]).pvalue
    assert srm_p_value(n_treatment, n_control, holdout_percent) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n_t, n_c", [(2, 2), (3, 40), (25, 9), (400, 60)])
def test_welch_interval_matches_scipy_from_raw_data(n_t, n_c):
    rng = np.random.default_rng(n_t * 1000 + n_c)
    visits_t = rng.poisson(2.4, n_t).astype(float)
    visits_c = rng.negative_binomial(2, 0.5, n_c).astype(float)
    estimate, lower, upper = mean_diff_interval(
        visits_t.sum(), (visits_t**2).sum(), n_t, visits_c.sum(), (visits_c**2).sum(), n_c, 0.9
    )
    expected = stats.ttest_ind(visits_t, visits_c, equal_var=False).confidence_interval(0.9)
    assert estimate == pytest.approx(visits_t.mean() - visits_c.mean(), abs=1e-12)
    assert (lower, upper) == pytest.approx((expected.low, expected.high), rel=1e-9)


def test_welch_interval_matches_ttest_ind_from_stats():
    # Invert scipy's Welch p-value: at the lower bound of a 95% interval, testing
    # "difference == lower" must give p = 0.05 exactly.
    sums = dict(sum_t=311.0, sumsq_t=1523.0, n_t=120, sum_c=52.0, sumsq_c=190.0, n_c=31)
    estimate, lower, _ = mean_diff_interval(**sums)
    mean_t, mean_c = sums["sum_t"] / sums["n_t"], sums["sum_c"] / sums["n_c"]
    sd_t = math.sqrt((sums["sumsq_t"] - sums["sum_t"] * mean_t) / (sums["n_t"] - 1))
    sd_c = math.sqrt((sums["sumsq_c"] - sums["sum_c"] * mean_c) / (sums["n_c"] - 1))
    result = stats.ttest_ind_from_stats(mean_t - lower, sd_t, sums["n_t"], mean_c, sd_c, sums["n_c"], equal_var=False)
    assert estimate == pytest.approx(mean_t - mean_c)
    assert result.pvalue == pytest.approx(0.05, rel=1e-9)


@pytest.mark.parametrize("df", [1, 1.7, 4, 29.3, 250, 1e4, 1e6])
@pytest.mark.parametrize("upper_tail", [0.25, 0.025, 0.0005, 1e-7])
def test_student_t_quantile_matches_scipy(df, upper_tail):
    assert _student_t_quantile(upper_tail, df) == pytest.approx(stats.t.isf(upper_tail, df), rel=1e-8)


# --- Kaplan-Meier -------------------------------------------------------------------------


def test_kaplan_meier_hand_worked_example():
    # time:      2    3    3+   5    6    8+   9    12
    # at risk:   8    7         5    4         2    1
    # S(t):    7/8  3/4       0.6  0.45     0.225  0
    # S first reaches <= 0.5 at 6 and <= 0.25 at 9. The unlock censored at 3 still counts as
    # at risk at 3.
    durations = [9, 3, 2, 12, 3, 6, 8, 5]
    observed = [True, False, True, True, True, True, False, True]
    summary = kaplan_meier_quantiles(durations, observed)
    assert summary == SurvivalSummary(median=6.0, p75=9.0, n=8, events=6)
    survfunc = SurvfuncRight(np.array(durations, float), np.array(observed, float))
    assert (survfunc.quantile(0.5), survfunc.quantile(0.75)) == (6.0, 9.0)


def test_kaplan_meier_curve_landing_exactly_on_the_quantile():
    # With no censoring, S = 0.75, 0.5, 0.25, 0. S(2) = 0.5 exactly, so the median is 2 under
    # "smallest t with S(t) <= 0.5". statsmodels (like SAS) requires S(t) < 0.5 and says 3.
    summary = kaplan_meier_quantiles([4, 3, 2, 1], [True] * 4)
    assert (summary.median, summary.p75) == (2.0, 3.0)
    survfunc = SurvfuncRight(np.array([4.0, 3, 2, 1]), np.ones(4))
    assert (survfunc.quantile(0.5), survfunc.quantile(0.75)) == (3.0, 4.0)


def test_kaplan_meier_quantiles_never_reached():
    mostly_censored = kaplan_meier_quantiles([1, 2, 3, 4], [True, False, False, False])
    assert mostly_censored == SurvivalSummary(median=None, p75=None, n=4, events=1)
    # S: 5/6, 0.625, 5/12, then censored; the median is reached, p75 never is.
    half_censored = kaplan_meier_quantiles([1, 2, 3, 4, 5, 6], [True, False, True, True] + [False] * 2)
    assert (half_censored.median, half_censored.p75) == (4.0, None)


def test_kaplan_meier_matches_statsmodels_on_random_censored_data():
    rng = np.random.default_rng(7)
    exact_ties_seen = 0
    for _ in range(300):
        size = int(rng.integers(1, 60))
        # Whole hours, so tied times are common.
        redeem = np.ceil(rng.exponential(rng.uniform(5, 50), size))
        censor = np.ceil(rng.exponential(rng.uniform(5, 80), size))
        durations, observed = np.minimum(redeem, censor), redeem <= censor
        ours = kaplan_meier_quantiles(durations.tolist(), observed.tolist())
        assert (ours.n, ours.events) == (size, int(observed.sum()))
        survfunc = SurvfuncRight(durations, observed.astype(float))
        for level, quantile in ((0.5, ours.median), (0.25, ours.p75)):
            reference = survfunc.quantile(1 - level)
            reference = None if math.isnan(reference) else float(reference)
            if quantile == reference:
                continue
            # The only allowed difference is the documented convention: S lands on the level
            # exactly at our time, and statsmodels (strict <) moves on to the next event time.
            assert quantile is not None
            (landed,) = survfunc.surv_prob[survfunc.surv_times == quantile]
            assert landed == pytest.approx(level, abs=1e-9)
            assert reference is None or reference > quantile
            exact_ties_seen += 1
    # Both branches are exercised, and exact landings stay the exception.
    assert 0 < exact_ties_seen < 30


# --- edge cases ---------------------------------------------------------------------------


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lower, upper = wilson_interval(0, 25)
    assert lower == 0.0 and 0.0 < upper < 0.2
    lower, upper = wilson_interval(25, 25)
    assert upper == 1.0 and 0.8 < lower < 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


def test_newcombe_edges():
    assert newcombe_diff_interval(5, 10, 0, 0) == (-1.0, 1.0)
    assert newcombe_diff_interval(0, 0, 5, 10) == (-1.0, 1.0)
    lower, upper = newcombe_diff_interval(0, 30, 0, 30)
    assert lower < 0.0 < upper
    lower, upper = newcombe_diff_interval(30, 30, 0, 30)
    assert 0.0 < lower < upper <= 1.0


def test_p_value_edges():
    assert two_proportion_p_value(3, 10, 0, 0) == 1.0
    assert two_proportion_p_value(0, 10, 0, 15) == 1.0
    assert two_proportion_p_value(10, 10, 15, 15) == 1.0
    assert two_proportion_p_value(30, 30, 0, 30) < 1e-10
    assert two_proportion_p_value(12, 40, 3, 10) == pytest.approx(1.0)


def test_relative_lift_none_when_undefined():
    assert relative_lift_interval(50, 1000, 4, 100) is None  # x_c below 5
    assert relative_lift_interval(50, 1000, 6, 1000) is None  # p_c below 1%
    assert relative_lift_interval(0, 1000, 20, 100) is None  # log(0) in treatment
    assert relative_lift_interval(50, 1000, 0, 0) is None
    assert relative_lift_interval(50, 1000, 4, 100, min_control_successes=4) is not None
    estimate, lower, upper = relative_lift_interval(100, 100, 50, 100)
    assert estimate == pytest.approx(1.0) and lower < 1.0 < upper


def test_mde_edges():
    assert minimum_detectable_effect(0.2, 0, 100) is None
    assert minimum_detectable_effect(0.2, 100, 0) is None
    assert minimum_detectable_effect(0.0, 100, 100) == 0.0
    with pytest.raises(ValueError):
        minimum_detectable_effect(1.2, 100, 100)


def test_srm_edges():
    assert srm_p_value(0, 0, 10) == 1.0
    assert srm_p_value(500, 0, 0) == 1.0
    assert srm_p_value(500, 3, 0) == 0.0
    assert srm_p_value(0, 500, 100) == 1.0
    assert srm_p_value(2, 500, 100) == 0.0
    # One arm by design: nothing to compare, whatever the counts.
    assert not srm_alert(500, 3, 0)
    assert not srm_alert(2, 500, 100)
    # Too few users for the chi-square approximation: no alert even at a tiny p-value.
    # (Control expects 7 of 70 users here but holds 40.)
    assert srm_p_value(30, 40, 10) < 1e-10
    assert not srm_alert(30, 40, 10)
    # An arm that lost every user still alerts, because its *expected* size is large.
    assert srm_alert(1000, 0, 10)
    assert not srm_alert(900, 100, 10)
    with pytest.raises(ValueError):
        srm_p_value(10, 10, 120)


def test_mean_diff_edges():
    assert mean_diff_interval(3.0, 9.0, 1, 4.0, 10.0, 2) is None
    assert mean_diff_interval(3.0, 5.0, 2, 0.0, 0.0, 0) is None
    # Every user has exactly 2 visits in treatment and 1 in control: no spread at all.
    assert mean_diff_interval(20.0, 40.0, 10, 5.0, 5.0, 5) == (1.0, 1.0, 1.0)


def test_kaplan_meier_edges():
    assert kaplan_meier_quantiles([], []) == SurvivalSummary(None, None, 0, 0)
    assert kaplan_meier_quantiles([3.5], [True]) == SurvivalSummary(3.5, 3.5, 1, 1)
    assert kaplan_meier_quantiles([3.5], [False]) == SurvivalSummary(None, None, 1, 0)
    with pytest.raises(ValueError):
        kaplan_meier_quantiles([1, 2], [True])
    with pytest.raises(ValueError):
        kaplan_meier_quantiles([-1.0], [True])


# --- simulation with known ground truth ---------------------------------------------------

CAMPAIGNS = 2000
# Binomial standard error of a 95% coverage rate over 2000 campaigns is 0.49 points, so
# 93.5-96.5% allows about 3 standard errors each way.
COVERAGE_BAND = (0.935, 0.965)


def simulate_campaigns(rng, true_lift, campaigns=CAMPAIGNS):
    """Per-campaign arm sizes and return-visit counts, with users randomized at a holdout of
    10-20% and the control return-visit rate p_c drawn from 5-30%."""
    users = rng.integers(5_000, 50_000, campaigns)
    holdout = rng.uniform(0.10, 0.20, campaigns)
    p_c = rng.uniform(0.05, 0.30, campaigns)
    n_c = rng.binomial(users, holdout)
    n_t = users - n_c
    x_c = rng.binomial(n_c, p_c)
    x_t = rng.binomial(n_t, p_c + true_lift)
    return [tuple(map(int, row)) for row in zip(x_t, n_t, x_c, n_c, strict=True)], p_c


def test_simulation_newcombe_coverage_and_unbiased_estimate():
    true_lift = 0.02
    campaigns, _ = simulate_campaigns(np.random.default_rng(101), true_lift)
    covered = [
        lower <= true_lift <= upper for lower, upper in (newcombe_diff_interval(*campaign) for campaign in campaigns)
    ]
    errors = np.array([x_t / n_t - x_c / n_c - true_lift for x_t, n_t, x_c, n_c in campaigns])
    coverage = np.mean(covered)
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], f"coverage {coverage:.4f}"
    standard_error = errors.std(ddof=1) / math.sqrt(len(errors))
    assert abs(errors.mean()) < 3 * standard_error, f"bias {errors.mean():.2e}"


def test_simulation_relative_lift_coverage():
    true_lift = 0.02
    campaigns, p_c = simulate_campaigns(np.random.default_rng(202), true_lift)
    intervals = [relative_lift_interval(*campaign) for campaign in campaigns]
    assert all(interval is not None for interval in intervals)
    true_relative = true_lift / p_c
    coverage = np.mean(
        [lower <= truth <= upper for (_, lower, upper), truth in zip(intervals, true_relative, strict=True)]
    )
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], f"coverage {coverage:.4f}"


def test_simulation_false_positive_rate_without_effect():
    campaigns, _ = simulate_campaigns(np.random.default_rng(303), true_lift=0.0)
    rejection_rate = np.mean([two_proportion_p_value(*campaign) < 0.05 for campaign in campaigns])
    # 5% +- 3 binomial standard errors (0.49 points each).
    assert 0.035 <= rejection_rate <= 0.065, f"rejection rate {rejection_rate:.4f}"


def test_simulation_welch_coverage_for_visits_per_user():
    # Small, unequal arms with unequal spread, where Welch's degrees of freedom matter.
    rng = np.random.default_rng(404)
    true_difference = 2.5 - 2.0
    covered = []
    for _ in range(CAMPAIGNS):
        visits_t = rng.poisson(2.5, int(rng.integers(40, 400))).astype(float)
        # Control: mean 2.0 and variance 3.0, against Poisson(2.5) in treatment.
        visits_c = rng.negative_binomial(4, 4 / 6, int(rng.integers(20, 80))).astype(float)
        _, lower, upper = mean_diff_interval(
            visits_t.sum(),
            (visits_t**2).sum(),
            len(visits_t),
            visits_c.sum(),
            (visits_c**2).sum(),
            len(visits_c),
        )
        covered.append(lower <= true_difference <= upper)
    coverage = np.mean(covered)
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], f"coverage {coverage:.4f}"


def simulate_srm(rng, control_loss, reassign_lost):
    users = rng.integers(20_000, 100_000, CAMPAIGNS)
    holdout_percent = rng.uniform(10, 20, CAMPAIGNS)
    n_c = rng.binomial(users, holdout_percent / 100)
    n_t = users - n_c
    lost = rng.binomial(n_c, control_loss)
    n_c = n_c - lost
    if reassign_lost:
        n_t = n_t + lost
    return np.mean([srm_alert(int(t), int(c), float(h)) for t, c, h in zip(n_t, n_c, holdout_percent, strict=True)])


def test_simulation_srm_quiet_with_correct_assignment():
    alert_rate = simulate_srm(np.random.default_rng(505), control_loss=0.0, reassign_lost=False)
    # Nominally 0.1% at threshold 0.001.
    assert alert_rate < 0.01, f"alert rate {alert_rate:.4f}"


@pytest.mark.parametrize("reassign_lost", [False, True], ids=["lost", "reassigned"])
def test_simulation_srm_fires_when_control_users_go_missing(reassign_lost):
    alert_rate = simulate_srm(np.random.default_rng(606), control_loss=0.15, reassign_lost=reassign_lost)
    assert alert_rate > 0.95, f"alert rate {alert_rate:.4f}"
