"""Simulated campaigns with a known effect, for checking the effect methods (tests) and for the
chart in the README (docs/measurement_chart.py). Vectorised with numpy: one row per campaign.

A user's habit s ~ Beta(0.5, 1) sets both their return probability and their visits in the 28
days before exposure, x ~ Poisson(20 s): habitual customers come back more, which is what makes
the pre-period a useful covariate. The offer gives a treated user an extra chance delta of a
return they would not have made, so p = s + (1 - s) delta and the true lift is
delta (1 - E[s]) = delta * 2 / 3, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offers import stats_math

HABIT_A, HABIT_B, PRE_VISITS_PER_HABIT = 0.5, 1.0, 20.0
MEAN_HABIT = HABIT_A / (HABIT_A + HABIT_B)


def true_lift(delta: float) -> float:
    return delta * (1.0 - MEAN_HABIT)


@dataclass(frozen=True)
class ArmData:
    """Per campaign (rows) sums of one arm."""

    n: np.ndarray
    returned: np.ndarray
    pre: np.ndarray
    pre_sq: np.ndarray
    pre_returned: np.ndarray


def simulate_arms(
    rng: np.random.Generator, campaigns: int, users: int, control_share: float, delta: float
) -> tuple[ArmData, ArmData]:
    """(treatment, control) sums of `campaigns` campaigns of `users` users each."""
    habit = rng.beta(HABIT_A, HABIT_B, size=(campaigns, users))
    pre = rng.poisson(PRE_VISITS_PER_HABIT * habit).astype(np.float64)
    control = rng.random((campaigns, users)) < control_share
    base = rng.random((campaigns, users)) < habit
    extra = (~control) & (rng.random((campaigns, users)) < delta)
    returned = (base | extra).astype(np.float64)

    def arm(mask: np.ndarray) -> ArmData:
        return ArmData(
            n=mask.sum(axis=1),
            returned=(returned * mask).sum(axis=1),
            pre=(pre * mask).sum(axis=1),
            pre_sq=(pre * pre * mask).sum(axis=1),
            pre_returned=(pre * returned * mask).sum(axis=1),
        )

    return arm(~control), arm(control)


@dataclass(frozen=True)
class Intervals:
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def covers(self, truth: float) -> np.ndarray:
        return (self.low <= truth) & (truth <= self.high)

    @property
    def width(self) -> np.ndarray:
        return self.high - self.low


def newcombe(t: ArmData, c: ArmData) -> Intervals:
    rows = [
        stats_math.rate_diff_interval(int(x_t), int(n_t), int(x_c), int(n_c))
        for x_t, n_t, x_c, n_c in zip(t.returned, t.n, c.returned, c.n, strict=True)
    ]
    estimate, low, high = np.array(rows).T
    return Intervals(estimate, low, high)


def always_valid(t: ArmData, c: ArmData) -> Intervals:
    rows = []
    for x_t, n_t, x_c, n_c in zip(t.returned, t.n, c.returned, c.n, strict=True):
        result = stats_math.always_valid_rate_diff(int(x_t), int(n_t), int(x_c), int(n_c))
        rows.append(result if result is not None else (0.0, -1.0, 1.0))
    estimate, low, high = np.array(rows).T
    return Intervals(estimate, low, high)


def cuped(t: ArmData, c: ArmData) -> tuple[Intervals, np.ndarray]:
    """CUPED intervals (a binary outcome: Σy² = Σy) and the variance reduction of each campaign."""
    rows = []
    for i in range(len(t.n)):
        arms = [
            stats_math.CupedArm(
                n=int(a.n[i]),
                sum_y=float(a.returned[i]),
                sum_y2=float(a.returned[i]),
                sum_x=float(a.pre[i]),
                sum_x2=float(a.pre_sq[i]),
                sum_xy=float(a.pre_returned[i]),
            )
            for a in (t, c)
        ]
        result = stats_math.cuped_diff_interval(arms[0], arms[1])
        assert result is not None
        rows.append((result.estimate, result.ci_low, result.ci_high, result.variance_reduction))
    estimate, low, high, reduction = np.array(rows).T
    return Intervals(estimate, low, high), reduction


def triggered_counts(
    rng: np.random.Generator,
    campaigns: int,
    users: int,
    control_share: float,
    trigger_share: float,
    base_rate: float,
    triggered_lift: float,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """A loyalty-like rule: a share of users trigger (in control, a ghost unlock), and only they
    are affected. Returns ITT (x_t, n_t, x_c, n_c) and triggered (x_t, n_t, x_c, n_c) counts."""
    n_c = rng.binomial(users, control_share, size=campaigns)
    n_t = users - n_c
    k_t, k_c = rng.binomial(n_t, trigger_share), rng.binomial(n_c, trigger_share)
    trig_x_t = rng.binomial(k_t, base_rate + triggered_lift)
    trig_x_c = rng.binomial(k_c, base_rate)
    rest_x_t, rest_x_c = rng.binomial(n_t - k_t, base_rate), rng.binomial(n_c - k_c, base_rate)
    return (trig_x_t + rest_x_t, n_t, trig_x_c + rest_x_c, n_c), (trig_x_t, k_t, trig_x_c, k_c)


def detection_rate(x_t: np.ndarray, n_t: np.ndarray, x_c: np.ndarray, n_c: np.ndarray) -> float:
    """Share of campaigns whose 95% Newcombe interval excludes 0."""
    hits = 0
    for a, b, c, d in zip(x_t, n_t, x_c, n_c, strict=True):
        if b == 0 or d == 0:
            continue
        low, high = stats_math.newcombe_diff_interval(int(a), int(b), int(c), int(d))
        hits += low > 0 or high < 0
    return hits / len(x_t)
