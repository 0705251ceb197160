"""Draws docs/measurement-methods.png for the README's Measurement section: coverage and mean
width of the 95% intervals of each effect method on simulated campaigns with a known lift
(bench/effect_simulation.py), and the false-positive rate of daily looks at A/A campaigns.

    .venv/bin/pip install -e '.[dev]'   # matplotlib is a dev extra
    .venv/bin/python docs/measurement_chart.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import effect_simulation as sim  # noqa: E402
from offers import stats_math  # noqa: E402

CONTROL_SHARE = 0.3


def method_figures() -> dict[str, tuple[float, float]]:
    """Method -> (coverage, mean width in percentage points), 1,000 campaigns of 3,000 users."""
    rng = np.random.default_rng(20261203)
    delta = 0.06
    truth = sim.true_lift(delta)
    t, c = sim.simulate_arms(rng, campaigns=1000, users=3000, control_share=CONTROL_SHARE, delta=delta)
    figures = {}
    for name, intervals in (
        ("ITT (Newcombe)", sim.newcombe(t, c)),
        ("CUPED", sim.cuped(t, c)[0]),
        ("Always-valid", sim.always_valid(t, c)),
    ):
        figures[name] = (float(intervals.covers(truth).mean()), float(intervals.width.mean() * 100))
    _, (x_t, n_t, x_c, n_c) = sim.triggered_counts(rng, 1000, 3000, CONTROL_SHARE, 0.1, 0.3, 0.1)
    rows = np.array([stats_math.rate_diff_interval(*map(int, r)) for r in zip(x_t, n_t, x_c, n_c, strict=True)])
    covered = (rows[:, 1] <= 0.1) & (rows[:, 2] >= 0.1)
    figures["Triggered (10% trigger)"] = (float(covered.mean()), float((rows[:, 2] - rows[:, 1]).mean() * 100))
    return figures


def daily_look_false_positives() -> tuple[float, float]:
    rng = np.random.default_rng(2023)
    campaigns, days, daily_users = 400, 28, 80
    n_c = rng.binomial(daily_users, CONTROL_SHARE, size=(campaigns, days))
    n_t = daily_users - n_c
    cum = [np.cumsum(a, axis=1) for a in (rng.binomial(n_t, 0.3), n_t, rng.binomial(n_c, 0.3), n_c)]
    fixed = valid = 0
    for i in range(campaigns):
        looks = [tuple(int(m[i, d]) for m in cum) for d in range(days)]
        fixed += any(not (lo <= 0 <= hi) for lo, hi in (stats_math.newcombe_diff_interval(*k) for k in looks))
        valid += any(
            not (s[1] <= 0 <= s[2]) for s in (stats_math.always_valid_rate_diff(*k) for k in looks) if s is not None
        )
    return fixed / campaigns, valid / campaigns


def main() -> None:
    figures = method_figures()
    fixed_fp, valid_fp = daily_look_false_positives()
    for name, (coverage, width) in figures.items():
        print(f"{name:26s} coverage {coverage:.3f}  mean width {width:.2f} pp")
    print(f"A/A, daily looks for 28 days: fixed {fixed_fp:.3f}, always-valid {valid_fp:.3f} false positives")

    fig, (ax_cov, ax_width, ax_fp) = plt.subplots(1, 3, figsize=(13, 4))
    names = list(figures)
    ax_cov.barh(names, [figures[n][0] * 100 for n in names], color="#4c78a8")
    ax_cov.axvline(95, color="black", linestyle="--", linewidth=1)
    ax_cov.set_xlim(85, 100)
    ax_cov.set_xlabel("coverage of the 95% interval (%)")
    ax_width.barh(names, [figures[n][1] for n in names], color="#f58518")
    ax_width.set_xlabel("mean interval width (percentage points)")
    ax_width.set_yticks([])
    ax_fp.bar(["fixed 95%", "always-valid"], [fixed_fp * 100, valid_fp * 100], color=["#e45756", "#54a24b"])
    ax_fp.axhline(5, color="black", linestyle="--", linewidth=1)
    ax_fp.set_ylabel("A/A campaigns ever 'significant' (%)")
    ax_fp.set_title("looked at daily for 28 days", fontsize=10)
    fig.suptitle("Effect methods on 1,000 simulated campaigns of 3,000 users (30% holdout)")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "measurement-methods.png", dpi=110)


if __name__ == "__main__":
    main()
