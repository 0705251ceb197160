import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from geo.plausibility import FixLimits, Rejection, check_fix

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
LIMITS = FixLimits()


def check(
    *,
    accuracy_m: float = 20.0,
    age_s: float = 5.0,
    mocked: bool = False,
    limits: FixLimits = LIMITS,
) -> Rejection | None:
    return check_fix(
        accuracy_m=accuracy_m,
        observed_at=NOW - timedelta(seconds=age_s),
        now=NOW,
        mocked=mocked,
        limits=limits,
    )


def test_plausible_fix_passes() -> None:
    assert check() is None


def test_os_reported_mock_wins_over_everything() -> None:
    assert check(mocked=True, accuracy_m=0, age_s=-3600) == Rejection("mocked_location", {"signal": "os_reported"})


def test_zero_accuracy_is_a_spoofing_signal_before_timestamps() -> None:
    assert check(accuracy_m=0, age_s=3600) == Rejection("mocked_location", {"signal": "zero_accuracy"})


@pytest.mark.parametrize("accuracy_m", [0.001, 0.5, 0.999])
def test_accuracy_finer_than_any_phone_is_a_spoofing_signal_before_timestamps(accuracy_m: float) -> None:
    assert check(accuracy_m=accuracy_m, age_s=3600) == Rejection(
        "mocked_location", {"signal": "implausible_accuracy", "accuracy_m": accuracy_m, "min_accuracy_m": 1.0}
    )


def test_min_accuracy_is_inclusive_and_follows_the_limits() -> None:
    assert check(accuracy_m=LIMITS.min_accuracy_m) is None
    assert check(accuracy_m=2.5, limits=FixLimits(min_accuracy_m=3)) == Rejection(
        "mocked_location", {"signal": "implausible_accuracy", "accuracy_m": 2.5, "min_accuracy_m": 3}
    )


def test_future_timestamp_beyond_skew_is_refused_before_accuracy() -> None:
    assert check(age_s=-42, accuracy_m=500) == Rejection(
        "future_timestamp", {"ahead_s": 42.0, "max_future_skew_s": 30.0}
    )


def test_future_skew_limit_is_inclusive() -> None:
    assert check(age_s=-LIMITS.max_future_skew_s) is None


def test_stale_fix_is_refused_before_accuracy() -> None:
    assert check(age_s=900, accuracy_m=500) == Rejection("stale", {"age_s": 900.0, "max_age_s": 600.0})


def test_max_age_is_inclusive() -> None:
    assert check(age_s=LIMITS.max_age_s) is None


def test_age_one_millisecond_over_the_limit_is_stale() -> None:
    rejection = check(age_s=LIMITS.max_age_s + 0.001)
    assert rejection is not None and rejection.reason == "stale"


def test_coarse_accuracy_is_refused() -> None:
    assert check(accuracy_m=250) == Rejection("accuracy_too_low", {"accuracy_m": 250, "max_accuracy_m": 100.0})


def test_max_accuracy_is_inclusive() -> None:
    assert check(accuracy_m=LIMITS.max_accuracy_m) is None
    assert check(accuracy_m=LIMITS.max_accuracy_m + 0.001) is not None


def test_negative_accuracy_marks_an_invalid_fix() -> None:
    rejection = check(accuracy_m=-1)
    assert rejection is not None and rejection.reason == "accuracy_too_low"


def test_custom_limits_are_used() -> None:
    strict = FixLimits(max_accuracy_m=10, max_age_s=60, max_future_skew_s=0)
    assert check(accuracy_m=20, limits=strict).reason == "accuracy_too_low"
    assert check(age_s=61, limits=strict).reason == "stale"
    assert check(age_s=-1, limits=strict).reason == "future_timestamp"


def test_timestamps_in_other_zones_compare_as_instants() -> None:
    oslo_summer = timezone(timedelta(hours=2))
    observed_at = (NOW - timedelta(seconds=5)).astimezone(oslo_summer)
    assert check_fix(accuracy_m=20, observed_at=observed_at, now=NOW, mocked=False, limits=LIMITS) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mocked": True},
        {"accuracy_m": 0},
        {"accuracy_m": 0.5},
        {"age_s": -42},
        {"age_s": 900},
        {"accuracy_m": 250},
    ],
)
def test_rejection_detail_is_json_serialisable(kwargs: dict) -> None:
    rejection = check(**kwargs)
    assert rejection is not None
    assert json.loads(json.dumps(rejection.detail)) == rejection.detail


@pytest.mark.parametrize("field", ["observed_at", "now"])
def test_naive_datetimes_are_refused(field: str) -> None:
    arguments = {"observed_at": NOW, "now": NOW, field: NOW.replace(tzinfo=None)}
    with pytest.raises(ValueError, match=field):
        check_fix(accuracy_m=20, mocked=False, limits=LIMITS, **arguments)


def test_non_finite_accuracy_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="accuracy_m"):
        check(accuracy_m=math.nan)
