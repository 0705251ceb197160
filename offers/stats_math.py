"""Statistics for judging offer campaigns against their randomized holdout.

Pure functions over counts and running sums (what SQL aggregates return). They use only the
standard library so that the API process does not need scipy. The methods, and why each one:

* One rate: Wilson score interval. It keeps close to its nominal coverage at small n and at
  rates near 0 or 1, where the Wald interval shrinks to zero width.
* Absolute lift p_t - p_c: Newcombe's hybrid score interval (method 10 of Newcombe 1998),
  built from the two Wilson intervals. It has a closed form and near-nominal coverage.
* Significance: the pooled two-proportion z-test, the usual test of "no effect". It is a
  different method, so near the margin it can disagree with whether the Newcombe interval
  excludes 0.
* Relative lift p_t / p_c - 1: a delta-method interval on log(p_t / p_c), then
  exponentiated. The result is asymmetric and never goes below -100%.
* Planning: minimum detectable effect from the normal approximation.
* Sample ratio mismatch (SRM): a chi-square goodness-of-fit test of the arm sizes against
  the configured holdout.
* Visits per user: a Welch interval from running sums. The Student t quantile is computed
  here from the regularized incomplete beta function.
* Time to redeem: Kaplan-Meier quantiles. An unlock that has not been redeemed yet (or has
  expired) is censored, not a failure.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from statistics import NormalDist

_STANDARD_NORMAL = NormalDist()


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _z_two_sided(confidence: float) -> float:
    _check_confidence(confidence)
    return _STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2.0)


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for the rate successes / n.

    With n == 0 nothing is known about the rate, so the result is (0.0, 1.0).
    """
    _check_counts(successes, n)
    z = _z_two_sided(confidence)
    if n == 0:
        return 0.0, 1.0
    rate = successes / n
    z2_over_n = z * z / n
    centre = (rate + z2_over_n / 2.0) / (1.0 + z2_over_n)
    half_width = z / (1.0 + z2_over_n) * math.sqrt(rate * (1.0 - rate) / n + z2_over_n / (4.0 * n))
    # At 0 or n successes the bound is exactly 0 or 1; the formula leaves rounding error there.
    lower = 0.0 if successes == 0 else centre - half_width
    upper = 1.0 if successes == n else centre + half_width
    return lower, upper


def newcombe_diff_interval(x_t: int, n_t: int, x_c: int, n_c: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe hybrid score interval (method 10) for the absolute lift p_t - p_c.

    If either arm is empty, the difference is unconstrained and the result is (-1.0, 1.0).
    """
    lower_t, upper_t = wilson_interval(x_t, n_t, confidence)
    lower_c, upper_c = wilson_interval(x_c, n_c, confidence)
    if n_t == 0 or n_c == 0:
        return -1.0, 1.0
    rate_t, rate_c = x_t / n_t, x_c / n_c
    difference = rate_t - rate_c
    return (
        difference - math.hypot(rate_t - lower_t, upper_c - rate_c),
        difference + math.hypot(upper_t - rate_t, rate_c - lower_c),
    )


def two_proportion_p_value(x_t: int, n_t: int, x_c: int, n_c: int) -> float:
    """Two-sided p-value of the pooled z-test of p_t == p_c.

    Returns 1.0 when there is nothing to test: an empty arm, or no variation at all
    (no successes in either arm, or only successes in both).
    """
    _check_counts(x_t, n_t)
    _check_counts(x_c, n_c)
    if n_t == 0 or n_c == 0:
        return 1.0
    pooled_rate = (x_t + x_c) / (n_t + n_c)
    variance = pooled_rate * (1.0 - pooled_rate) * (1.0 / n_t + 1.0 / n_c)
    if variance == 0.0:
        return 1.0
    z = (x_t / n_t - x_c / n_c) / math.sqrt(variance)
    # erfc keeps its precision far into the tail, where 1 - cdf would round to 0.
    return math.erfc(abs(z) / math.sqrt(2.0))


def relative_lift_interval(
    x_t: int,
    n_t: int,
    x_c: int,
    n_c: int,
    confidence: float = 0.95,
    min_control_rate: float = 0.01,
    min_control_successes: int = 5,
) -> tuple[float, float, float] | None:
    """Relative lift p_t / p_c - 1, returned as (estimate, lower, upper).

    The estimate is the plug-in ratio minus 1. The interval is the delta-method interval for
    log(p_t / p_c), whose variance is 1/x_t - 1/n_t + 1/x_c - 1/n_c. Its ends are then
    exponentiated and 1 is subtracted. So the interval is asymmetric around the estimate
    and never goes below -1.

    Returns None when the control rate is too small to divide by
    (p_c < min_control_rate or x_c < min_control_successes). It also returns None when the
    treatment arm has no successes, because the log ratio is then undefined.
    """
    _check_counts(x_t, n_t)
    _check_counts(x_c, n_c)
    z = _z_two_sided(confidence)
    if x_t == 0 or x_c == 0 or x_c < min_control_successes or x_c / n_c < min_control_rate:
        return None
    ratio = (x_t / n_t) / (x_c / n_c)
    half_width = z * math.sqrt(1.0 / x_t - 1.0 / n_t + 1.0 / x_c - 1.0 / n_c)
    return ratio - 1.0, ratio * math.exp(-half_width) - 1.0, ratio * math.exp(half_width) - 1.0


def minimum_detectable_effect(p_c: float, n_t: int, n_c: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest absolute lift in the rate that a two-sided level-alpha test detects with
    the given power.

    Formula: (z_{1-alpha/2} + z_{power}) * sqrt(p_c (1 - p_c) (1/n_t + 1/n_c)). This is the
    normal approximation with both arms' variance evaluated at p_c, the usual planning
    simplification; it is accurate when the lift is small next to p_c.

    Returns None when either arm is empty.
    """
    if not 0.0 <= p_c <= 1.0:
        raise ValueError(f"p_c must be in [0, 1], got {p_c}")
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    if n_t < 0 or n_c < 0:
        raise ValueError(f"arm sizes must be >= 0, got {n_t}, {n_c}")
    if n_t == 0 or n_c == 0:
        return None
    z_sum = _STANDARD_NORMAL.inv_cdf(1.0 - alpha / 2.0) + _STANDARD_NORMAL.inv_cdf(power)
    return z_sum * math.sqrt(p_c * (1.0 - p_c) * (1.0 / n_t + 1.0 / n_c))


def srm_p_value(n_treatment: int, n_control: int, holdout_percent: float) -> float:
    """p-value of the chi-square goodness-of-fit test (1 degree of freedom) that the arms
    split as configured, with control share holdout_percent / 100.

    A holdout of 0% or 100% allows only one arm. In that case the result is 0.0 if any user
    is in the other arm, and 1.0 otherwise.
    """
    if n_treatment < 0 or n_control < 0:
        raise ValueError(f"arm sizes must be >= 0, got {n_treatment}, {n_control}")
    if not 0.0 <= holdout_percent <= 100.0:
        raise ValueError(f"holdout_percent must be in [0, 100], got {holdout_percent}")
    if holdout_percent == 0.0:
        return 1.0 if n_control == 0 else 0.0
    if holdout_percent == 100.0:
        return 1.0 if n_treatment == 0 else 0.0
    total = n_treatment + n_control
    if total == 0:
        return 1.0
    expected_control = total * holdout_percent / 100.0
    expected_treatment = total - expected_control
    statistic = (n_control - expected_control) ** 2 / expected_control + (
        n_treatment - expected_treatment
    ) ** 2 / expected_treatment
    # With 1 degree of freedom the statistic is Z**2, so P(chi2 > s) = P(|Z| > sqrt(s)).
    return math.erfc(math.sqrt(statistic / 2.0))


def srm_alert(
    n_treatment: int,
    n_control: int,
    holdout_percent: float,
    threshold: float = 0.001,
    min_per_arm: int = 8,
) -> bool:
    """True when the arm sizes contradict the configured holdout (SRM p-value < threshold).

    The alert stays False until each arm is *expected* to hold at least min_per_arm users,
    which is what the chi-square approximation needs. Expected counts are used rather than
    observed ones, so an arm that has lost nearly all its users still raises the alert.
    With a 0% or 100% holdout one arm expects nobody, so there is nothing to compare and
    no alert.
    """
    p_value = srm_p_value(n_treatment, n_control, holdout_percent)
    total = n_treatment + n_control
    expected_control = total * holdout_percent / 100.0
    if min(expected_control, total - expected_control) < min_per_arm:
        return False
    return p_value < threshold


def _regularized_incomplete_beta(x: float, one_minus_x: float, a: float, b: float) -> float:
    """I_x(a, b) from its continued fraction, evaluated by the modified Lentz method
    (Numerical Recipes 6.4). The fraction converges fast only for x below (a + 1) / (a + b + 2);
    above that point the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) is used instead. The caller
    passes 1 - x as well, computed directly, because x is often within 1e-8 of 1 and
    subtracting it from 1 would lose most of the digits."""
    if x <= 0.0:
        return 0.0
    if one_minus_x <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(one_minus_x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - math.exp(log_front) * _beta_continued_fraction(one_minus_x, b, a) / b
    return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300  # stands in for a zero denominator, as Lentz's method prescribes
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    # The fraction needs about sqrt(max(a, b)) terms; the cap allows far more than that.
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            return fraction
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b})")


def _student_t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0 and T ~ Student t with df degrees of freedom."""
    t_squared = t * t
    return 0.5 * _regularized_incomplete_beta(df / (df + t_squared), t_squared / (df + t_squared), df / 2.0, 0.5)


def _student_t_quantile(upper_tail: float, df: float) -> float:
    """The t > 0 with P(T > t) = upper_tail (< 0.5), found by Newton's method.

    Newton starts from the normal quantile, which lies below the t quantile. The tail is
    convex for t > 0, so from there every step stays below the root and moves toward it.
    The result matches scipy to a few 1e-11 (relative) up to df = 1e5 and to a few 1e-9 up
    to df = 1e7; rounding in lgamma of the large df / 2 is the limit. Both are far finer
    than an interval needs.
    """
    log_density_scale = math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
    t = _STANDARD_NORMAL.inv_cdf(1.0 - upper_tail)
    for _ in range(200):
        density = math.exp(log_density_scale - (df + 1.0) / 2.0 * math.log1p(t * t / df))
        step = (_student_t_upper_tail(t, df) - upper_tail) / density
        t += step
        if step <= 1e-12 * t:
            return t
    raise ArithmeticError(f"t quantile did not converge (upper_tail={upper_tail}, df={df})")


def _mean_and_variance(total: float, total_of_squares: float, n: int) -> tuple[float, float]:
    mean = total / n
    # When all values are equal, rounding in the difference can fall slightly below zero.
    variance = max(0.0, (total_of_squares - total * mean) / (n - 1))
    return mean, variance


def mean_diff_interval(
    sum_t: float,
    sumsq_t: float,
    n_t: int,
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    confidence: float = 0.95,
) -> tuple[float, float, float] | None:
    """Welch interval for mean_t - mean_c (e.g. visits per user), computed from running sums
    (sum, sum of squares, count) and returned as (estimate, lower, upper).

    The degrees of freedom come from the Welch-Satterthwaite formula. Returns None when an
    arm has fewer than 2 users, since its variance cannot then be estimated.
    """
    _check_confidence(confidence)
    if n_t < 2 or n_c < 2:
        return None
    mean_t, variance_t = _mean_and_variance(sum_t, sumsq_t, n_t)
    mean_c, variance_c = _mean_and_variance(sum_c, sumsq_c, n_c)
    squared_se_t, squared_se_c = variance_t / n_t, variance_c / n_c
    difference = mean_t - mean_c
    standard_error = math.sqrt(squared_se_t + squared_se_c)
    if standard_error == 0.0:
        # Neither arm varies, so the observed difference is all the data can say.
        return difference, difference, difference
    degrees_of_freedom = (squared_se_t + squared_se_c) ** 2 / (
        squared_se_t**2 / (n_t - 1) + squared_se_c**2 / (n_c - 1)
    )
    half_width = _student_t_quantile((1.0 - confidence) / 2.0, degrees_of_freedom) * standard_error
    return difference, difference - half_width, difference + half_width


# S(t) is a product of factors like 2/3, so a curve that lands exactly on 0.5 can come out
# as 0.5000000000000001. Real steps of S are far larger than this for any realistic n.
_SURVIVAL_ROUNDING = 1e-12


@dataclass(frozen=True)
class SurvivalSummary:
    """Kaplan-Meier time-to-redeem summary; a quantile is None if the curve never gets there."""

    median: float | None
    p75: float | None
    n: int
    events: int


def kaplan_meier_quantiles(durations: Sequence[float], observed: Sequence[bool]) -> SurvivalSummary:
    """Kaplan-Meier median and 75th percentile of time to redeem.

    observed=False marks a censored unlock (not redeemed yet, or expired). Ties follow the
    usual convention: an unlock censored at an event time still counts as at risk at that
    time. median is the smallest event time with S(t) <= 0.5, and p75 the smallest with
    S(t) <= 0.25 (the time by which 75% have redeemed). This is the non-strict convention.
    statsmodels' SurvfuncRight.quantile (like SAS) uses S(t) < q instead, so the two differ
    only when S lands exactly on 0.5 or 0.25; statsmodels then reports the next event time.
    """
    if len(durations) != len(observed):
        raise ValueError(f"{len(durations)} durations but {len(observed)} observed flags")
    groups = []
    for time, group in groupby(sorted(zip(durations, observed, strict=True)), key=lambda pair: pair[0]):
        flags = [flag for _, flag in group]
        events_now = sum(map(bool, flags))
        groups.append((time, events_now, len(flags) - events_now))
    return kaplan_meier_grouped(groups)


def kaplan_meier_grouped(groups: Sequence[tuple[float, int, int]]) -> SurvivalSummary:
    """The same from counts: (time, redeemed at that time, censored at that time) rows, as
    SQL aggregates return them, so millions of unlocks cost a few hundred rows."""
    if not all(
        math.isfinite(time) and time >= 0 and events >= 0 and censored >= 0 for time, events, censored in groups
    ):
        raise ValueError("durations must be finite and >= 0, counts >= 0")
    merged: dict[float, list[int]] = {}
    for time, events, censored in groups:  # rows for one time may come from several queries
        counts = merged.setdefault(time, [0, 0])
        counts[0] += events
        counts[1] += censored
    groups = sorted((time, events, censored) for time, (events, censored) in merged.items())
    at_risk = sum(events + censored for _, events, censored in groups)
    n, total_events = at_risk, sum(events for _, events, _ in groups)
    survival = 1.0
    median = p75 = None
    for time, events_now, censored_now in groups:
        if events_now:
            survival *= 1.0 - events_now / at_risk
            if median is None and survival <= 0.5 + _SURVIVAL_ROUNDING:
                median = float(time)
            if survival <= 0.25 + _SURVIVAL_ROUNDING:
                p75 = float(time)
                break
        at_risk -= events_now + censored_now
    return SurvivalSummary(median=median, p75=p75, n=n, events=total_events)


# --------------------------------------------------------------------------- issue 13 methods


@dataclass(frozen=True)
class CupedArm:
    """One arm's running sums over analysed users: outcome y and pre-period covariate x."""

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float


@dataclass(frozen=True)
class CupedResult:
    estimate: float
    ci_low: float
    ci_high: float
    theta: float
    # 1 - var(adjusted lift) / var(unadjusted lift): the share of the variance removed.
    variance_reduction: float


def cuped_diff_interval(t: CupedArm, c: CupedArm, confidence: float = 0.95) -> CupedResult | None:
    """CUPED (Deng et al. 2013) difference in means, from running sums.

    theta = cov(x, y) / var(x), pooled over both arms (each arm's sums centred on its own
    means, so a real effect on y does not leak into theta). The adjusted mean of an arm is
    ȳ - theta (x̄ - x̄_all) with x̄_all the mean of x over both arms; the constant cancels in
    the difference, so the lift is (ȳ_t - ȳ_c) - theta (x̄_t - x̄_c). The variance of each
    adjusted mean is var(y - theta x) / n with var(y - theta x) = s_yy - 2 theta s_xy +
    theta^2 s_xx from the arm's own sums; the interval is the normal one. Returns None when
    an arm has fewer than 2 users.
    """
    z = _z_two_sided(confidence)
    if t.n < 2 or c.n < 2:
        return None

    def centred(arm: CupedArm) -> tuple[float, float, float]:
        # (Σ(x - x̄)², Σ(x - x̄)(y - ȳ), Σ(y - ȳ)²) of one arm
        return (
            arm.sum_x2 - arm.sum_x**2 / arm.n,
            arm.sum_xy - arm.sum_x * arm.sum_y / arm.n,
            arm.sum_y2 - arm.sum_y**2 / arm.n,
        )

    sxx_t, sxy_t, syy_t = centred(t)
    sxx_c, sxy_c, syy_c = centred(c)
    sxx = sxx_t + sxx_c
    theta = (sxy_t + sxy_c) / sxx if sxx > 0 else 0.0

    def variances(n: int, sxx_arm: float, sxy_arm: float, syy_arm: float) -> tuple[float, float]:
        plain = max(0.0, syy_arm / (n - 1))
        adjusted = max(0.0, (syy_arm - 2 * theta * sxy_arm + theta * theta * sxx_arm) / (n - 1))
        return plain, adjusted

    plain_t, adj_t = variances(t.n, sxx_t, sxy_t, syy_t)
    plain_c, adj_c = variances(c.n, sxx_c, sxy_c, syy_c)
    estimate = (t.sum_y / t.n - c.sum_y / c.n) - theta * (t.sum_x / t.n - c.sum_x / c.n)
    variance = adj_t / t.n + adj_c / c.n
    plain = plain_t / t.n + plain_c / c.n
    half_width = z * math.sqrt(variance)
    reduction = 1.0 - variance / plain if plain > 0 else 0.0
    return CupedResult(estimate, estimate - half_width, estimate + half_width, theta, reduction)


def rate_diff_interval(x_t: int, n_t: int, x_c: int, n_c: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, lower, upper) of p_t - p_c with the Newcombe interval (both arms non-empty)."""
    low, high = newcombe_diff_interval(x_t, n_t, x_c, n_c, confidence)
    return x_t / n_t - x_c / n_c, low, high


# An always-valid interval is tuned for the sample size at which it should be narrowest. It
# stays valid at every other size, only a little wider there. 2,000 analysed users (both arms)
# is a typical campaign's first month; the tuning must not be chosen from the data.
PLANNED_USERS = 2000


def confidence_sequence_rho(planned_users: int = PLANNED_USERS, alpha: float = 0.05) -> float:
    """The mixture tuning rho that makes the confidence sequence narrowest at planned_users:
    rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / n (Waudby-Smith et al. 2023, section 2.5,
    after Howard et al. 2021)."""
    if planned_users < 1:
        raise ValueError(f"planned_users must be >= 1, got {planned_users}")
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / planned_users)


def confidence_sequence_radius(
    variance_of_estimate: float, n: int, alpha: float = 0.05, rho: float | None = None
) -> float:
    """Half-width of the asymptotic confidence sequence for an estimate made of n users.

    Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and
    asymptotic confidence sequences", Annals of Statistics 2024 (arXiv 2103.06476, 2023),
    Theorem 2.2: with sigma^2 the per-user variance, the radius at n is
    sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha)).
    Here sigma^2 / n is the estimate's variance, so the radius is
    sqrt(variance_of_estimate * 2 (n rho^2 + 1) / (n rho^2) * log(sqrt(n rho^2 + 1) / alpha)).
    With P(the sequence ever misses the truth) <= alpha (asymptotically), a result may be read
    after every day without raising the false-positive rate.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rho = confidence_sequence_rho(alpha=alpha) if rho is None else rho
    n_rho2 = n * rho * rho
    return math.sqrt(
        max(0.0, variance_of_estimate) * 2.0 * (n_rho2 + 1.0) / n_rho2 * math.log(math.sqrt(n_rho2 + 1.0) / alpha)
    )


def always_valid_rate_diff(
    x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = 0.05, rho: float | None = None
) -> tuple[float, float, float] | None:
    """(estimate, lower, upper) of p_t - p_c as an asymptotic confidence sequence; the
    variance of the estimate is the unpooled p(1-p)/n_t + p(1-p)/n_c. None with an empty arm."""
    if n_t == 0 or n_c == 0:
        return None
    rate_t, rate_c = x_t / n_t, x_c / n_c
    variance = rate_t * (1 - rate_t) / n_t + rate_c * (1 - rate_c) / n_c
    radius = confidence_sequence_radius(variance, n_t + n_c, alpha, rho)
    difference = rate_t - rate_c
    return difference, max(-1.0, difference - radius), min(1.0, difference + radius)


@dataclass(frozen=True)
class PowerPlan:
    users_treatment: int
    users_control: int
    days: int | None  # None when no one checks in at the venues


def power_plan(
    baseline_rate: float,
    lift: float,
    control_share: float,
    daily_new_users: float,
    attribution_days: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> PowerPlan:
    """Users per arm, and days, to detect an absolute lift in the return-visit rate.

    Two-sided level-alpha two-proportion test, normal approximation with each arm's own
    variance: N = (z_{1-alpha/2} + z_power)^2 (p_c(1-p_c)/h + p_t(1-p_t)/(1-h)) / lift^2 users
    in all, control share h. Days: the users come at daily_new_users a day, and the last of
    them needs attribution_days for the window to close (plus the day it closes on).
    """
    if not 0.0 < control_share < 1.0:
        raise ValueError(f"control_share must be in (0, 1), got {control_share}")
    if lift == 0:
        raise ValueError("lift must not be 0")
    p_c = min(max(baseline_rate, 0.0), 1.0)
    p_t = min(max(p_c + lift, 0.0), 1.0)
    z_sum = _STANDARD_NORMAL.inv_cdf(1.0 - alpha / 2.0) + _STANDARD_NORMAL.inv_cdf(power)
    # a floor on the variance, so a venue with no returns yet does not plan for 0 users
    variance = max(p_c * (1 - p_c), 1e-4) / control_share + max(p_t * (1 - p_t), 1e-4) / (1 - control_share)
    total = z_sum * z_sum * variance / (lift * lift)
    n_c, n_t = math.ceil(total * control_share), math.ceil(total * (1 - control_share))
    days = math.ceil((n_c + n_t) / daily_new_users) + attribution_days + 1 if daily_new_users > 0 else None
    return PowerPlan(users_treatment=n_t, users_control=n_c, days=days)
