"""Draws docs/scaling.png for docs/scaling.md: check-ins per second one machine carries, by its
size, from the CPU per check-in that `make bench` measured (API, PostgreSQL and Redis ms), against
the lunchtime peak of a given daily volume. The arithmetic is that of docs/scaling.md §1.2–1.3:
linear in vCPUs (an upper bound), a 1.2× paced-load factor, vCPUs split as in §1.3.

    .venv/bin/pip install -e '.[dev]'   # matplotlib is a dev extra
    .venv/bin/python docs/scaling_chart.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# CPU ms per check-in at saturation: API, PostgreSQL, Redis (bench/results/latest.md, 2026-11-22,
# and bench/results/2026-12-03-full.md, a day the machine ran about half as fast).
MEASURED = {
    "2026-11-22 run (base)": (1.44, 1.31, 0.08),
    "2026-12-03 run (bound)": (3.06, 2.48, 0.16),
}
PACED_LOAD_FACTOR = 1.2  # a paced check-in costs more CPU than one at saturation
# vCPUs of the API, PostgreSQL and Redis on machines of 8, 16 and 32 vCPU (Redis shares at 8).
SPLITS = {8: (4, 4, 0), 16: (8, 7, 1), 32: (16, 15, 1)}
PEAK_PER_DAILY = 0.15 / 3600 * 2  # busiest hour 15% of the day, busiest minute 2× that hour


def capacity(ms: tuple[float, float, float], split: tuple[int, int, int], utilisation: float) -> float:
    """Check-ins/s at this utilisation: the smallest of the API's, PostgreSQL's and Redis's."""
    return min(
        vcpus * 1000 * utilisation / (cost * PACED_LOAD_FACTOR) for cost, vcpus in zip(ms, split, strict=True) if vcpus
    )


def main() -> None:
    sizes = list(SPLITS)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (label, ms), colour in zip(MEASURED.items(), ("tab:blue", "tab:orange"), strict=True):
        for utilisation, style, marker in ((0.7, "-", "o"), (0.5, "--", "s")):
            figures = [capacity(ms, SPLITS[size], utilisation) for size in sizes]
            ax.plot(sizes, figures, style, marker=marker, color=colour, label=f"{label}, {utilisation:.0%} CPU")
    for daily in (10e6, 50e6):
        peak = daily * PEAK_PER_DAILY
        ax.axhline(peak, color="grey", linewidth=0.8)
        ax.text(8.2, peak * 1.03, f"peak minute of {daily / 1e6:.0f}M check-ins a day: {peak:,.0f}/s", fontsize=8)
    ax.set_xticks(sizes)
    ax.set_xlabel("vCPUs of one machine (API, PostgreSQL and Redis together)")
    ax.set_ylabel("check-ins per second")
    ax.set_title("One machine, from measured CPU per check-in (linear in vCPUs: an upper bound)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "scaling.png", dpi=110)


if __name__ == "__main__":
    main()
