"""Cheap plausibility checks on one GPS fix, run before a check-in touches the database.

`check_fix` returns the first reason to refuse the fix, in this order: OS-reported mock location,
a 0 m accuracy or one finer than `min_accuracy_m` (no real phone reports one, so it is taken as a
spoofing signal: `zero_accuracy`, `implausible_accuracy`), a timestamp in the future, a stale
timestamp, and finally an accuracy radius worse than allowed. A negative accuracy (iOS's way of
marking a fix invalid) is refused as `accuracy_too_low`.

The checks that need the user's history, speed and cool-down, run in the database under the user's
lock (migrations/sql/functions/too_fast.sql, whose speed formula is implied_speed.sql, and
too_frequent.sql): there is no second speed formula here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FixLimits:
    max_accuracy_m: float = 100.0
    max_age_s: float = 600.0
    max_future_skew_s: float = 30.0
    min_accuracy_m: float = 1.0


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: dict[str, object]


def check_fix(
    *,
    accuracy_m: float,
    observed_at: datetime,
    now: datetime,
    mocked: bool,
    limits: FixLimits,
) -> Rejection | None:
    """Return why the fix is implausible, or None; limits themselves are accepted."""
    _require_aware(observed_at, "observed_at")
    _require_aware(now, "now")
    # JSON cannot carry NaN portably, so a non-finite accuracy is a caller bug, not a client fix.
    if not math.isfinite(accuracy_m):
        raise ValueError(f"accuracy_m must be finite, got {accuracy_m!r}")

    if mocked:
        return Rejection("mocked_location", {"signal": "os_reported"})
    if accuracy_m == 0:
        return Rejection("mocked_location", {"signal": "zero_accuracy"})
    if 0 < accuracy_m < limits.min_accuracy_m:
        return Rejection(
            "mocked_location",
            {"signal": "implausible_accuracy", "accuracy_m": accuracy_m, "min_accuracy_m": limits.min_accuracy_m},
        )

    ahead_s = (observed_at - now).total_seconds()
    if ahead_s > limits.max_future_skew_s:
        return Rejection("future_timestamp", {"ahead_s": ahead_s, "max_future_skew_s": limits.max_future_skew_s})
    age_s = -ahead_s
    if age_s > limits.max_age_s:
        return Rejection("stale", {"age_s": age_s, "max_age_s": limits.max_age_s})
    if accuracy_m > limits.max_accuracy_m or accuracy_m < 0:
        return Rejection(
            "accuracy_too_low",
            {"accuracy_m": accuracy_m, "max_accuracy_m": limits.max_accuracy_m},
        )
    return None


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment!r}")
