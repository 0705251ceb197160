"""The stats pipeline end to end against known ground truth.

A campaign's history is generated through the real `checkin(...)` database function, with
back-dated fixes, so the aggregates are exactly the ones production keeps. Every user's arm
comes from the function's own deterministic assignment; the simulation reads it from
`exposures` after the first visit and then decides the user's return visits: control
returns with P_CONTROL, treatment with P_CONTROL + LIFT. The stats endpoint must then
report exactly what the simulation did, its intervals must match statsmodels and scipy on
the raw per-user outcomes, and a broken assignment must raise the sample-ratio alarm.
(The many-campaign coverage simulation is at the math level, in test_stats_math.py.)
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row
from scipy import stats as scipy_stats
from sqlalchemy.engine import make_url
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from tests.factories import World, offer_body

ATTRIBUTION_DAYS = 7
HOLDOUT_PERCENT = 30
P_CONTROL, LIFT = 0.30, 0.08
CLOSED_USERS, OPEN_USERS, REJECTED_ONLY_USERS = 2500, 300, 40
BATCH = 400  # check-ins per transaction (each holds its user's advisory lock until commit)

# Named arguments, so the call reads like the function's signature. No velocity or cool-down
# limits: the simulation decides who visits when.
CHECKIN_SQL = """
    SELECT checkin(p_user => %(user)s, p_idempotency_key => %(key)s, p_request_hash => 'simulated',
                   p_lon => %(lon)s, p_lat => %(lat)s, p_accuracy_m => 10, p_observed_at => %(at)s,
                   p_venue_id => NULL, p_device_id => NULL, p_mocked => false,
                   p_reason => %(reason)s, p_detail => %(detail)s::jsonb,
                   p_max_speed_kmh => 1e9, p_cooldown => interval '0')
"""


@dataclass
class SimUser:
    id: str
    first_at: datetime
    arm: str = ""
    returns: list[datetime] = field(default_factory=list)  # accepted visits inside the attribution window
    later: list[datetime] = field(default_factory=list)  # accepted visits after the window: not a return

    def window_closed(self, today) -> bool:
        return self.first_at.date() + timedelta(days=ATTRIBUTION_DAYS) < today


@dataclass
class Visit:
    user: str
    at: datetime
    venue: dict
    reason: str | None = None

    def params(self) -> dict:
        lon, lat = self.venue["center"]
        detail = json.dumps({"simulated": True}) if self.reason else None
        return {
            "user": self.user,
            "key": str(uuid.uuid4()),
            "lon": lon,
            "lat": lat,
            "at": self.at,
            "reason": self.reason,
            "detail": detail,
        }


def run_checkins(db, visits: list[Visit]) -> None:
    for start in range(0, len(visits), BATCH):
        with db.transaction(), db.cursor() as cur:
            cur.executemany(CHECKIN_SQL, [v.params() for v in visits[start : start + BATCH]])


def day_start(days_ago: int, today) -> datetime:
    return datetime.combine(today - timedelta(days=days_ago), time(), tzinfo=UTC)


def arms_of(db, campaign_id: str) -> dict[str, str]:
    rows = db.execute("SELECT user_id, arm FROM exposures WHERE campaign_id = %s", [campaign_id]).fetchall()
    return {r["user_id"]: r["arm"] for r in rows}


def simulated_campaign(world, holdout_percent: int = HOLDOUT_PERCENT):
    m = world.merchant()
    venues = [world.venue(m, name="Storgata"), world.venue(m, name="Torget")]
    campaign = world.campaign(
        m,
        [v["id"] for v in venues],
        holdout_percent=holdout_percent,
        attribution_days=ATTRIBUTION_DAYS,
        starts_at=datetime.now(UTC) - timedelta(days=40),
        offers=[offer_body(per_user_limit=1000, total_limit=10_000_000)],
    )
    return m, venues, campaign


def get_stats(world, merchant, campaign) -> dict:
    r = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=merchant.admin)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def simulation(http, settings, database_url):
    """One campaign's history with known outcomes; its stats as the endpoint reports them."""
    world = World(http, settings)
    rng = random.Random(20261122)
    now = datetime.now(UTC)
    today = now.date()
    m, venues, campaign = simulated_campaign(world)
    # Both sides of the boundary: a first visit ATTRIBUTION_DAYS days ago has its window end today.
    users = [
        SimUser(f"sim-{uuid.uuid4().hex[:12]}", day_start(days_ago, today) + timedelta(seconds=rng.uniform(0, 86_399)))
        for days_ago in [rng.randint(ATTRIBUTION_DAYS + 1, 30) for _ in range(CLOSED_USERS)]
        + [rng.randint(1, ATTRIBUTION_DAYS) for _ in range(OPEN_USERS)]
    ]
    first = [Visit(u.id, u.first_at, rng.choice(venues)) for u in users]

    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        run_checkins(db, first)
        arms = arms_of(db, campaign["id"])
        later_visits, rejected = [], []
        for u in users:
            u.arm = arms[u.id]
            if rng.random() < P_CONTROL + (LIFT if u.arm == "treatment" else 0):
                for _ in range(1 + sum(rng.random() < 0.35 for _ in range(3))):
                    at = u.first_at + timedelta(seconds=rng.uniform(60, ATTRIBUTION_DAYS * 86_400 - 60))
                    if at < now - timedelta(minutes=1):
                        u.returns.append(at)
            if rng.random() < 0.25:
                at = u.first_at + timedelta(days=ATTRIBUTION_DAYS, seconds=rng.uniform(3_600, 3 * 86_400))
                if at < now - timedelta(minutes=1):
                    u.later.append(at)
            later_visits += [Visit(u.id, at, rng.choice(venues)) for at in u.returns + u.later]
            if rng.random() < 0.1:
                at = min(u.first_at + timedelta(days=rng.uniform(-2, 10)), now - timedelta(minutes=1))
                reason = rng.choice(["accuracy_too_low", "mocked_location"])
                rejected.append(Visit(u.id, at, rng.choice(venues), reason))
        rejected += [
            Visit(
                f"sim-{uuid.uuid4().hex[:12]}", now - timedelta(days=rng.uniform(0.01, 20)), rng.choice(venues), "stale"
            )
            for _ in range(REJECTED_ONLY_USERS)
        ]
        run_checkins(db, later_visits + rejected)
    reported = get_stats(world, m, campaign)
    return {
        "merchant": m,
        "campaign": campaign,
        "venues": venues,
        "users": users,
        "today": datetime.now(UTC).date(),  # the day the stats were read on decides which windows closed
        "accepted": first + later_visits,
        "rejected": rejected,
        "stats": reported,
    }


def test_funnel_counts_are_exactly_what_the_simulation_did(simulation):
    s, users = simulation["stats"], simulation["users"]
    accepted, rejected = simulation["accepted"], simulation["rejected"]
    arm = {u.id: u.arm for u in users}

    funnel = s["funnel"]
    assert funnel["checkins_accepted"] == len(accepted)
    assert funnel["rejected_by_reason"] == dict(sorted(Counter(v.reason for v in rejected).items()))
    assert funnel["checkins_rejected"] == len(rejected)
    assert funnel["unique_users"] == len(users)
    assert funnel["exposures"] == dict(Counter(u.arm for u in users))
    assert set(funnel["exposures"]) == {"treatment", "control"}
    assert funnel["unlocks"] == sum(arm[v.user] == "treatment" for v in accepted)  # the holdout never unlocks
    assert funnel["redemptions"] == 0
    assert funnel["time_to_redeem_minutes"]["unlocks"] == funnel["unlocks"]

    by_day = {row["day"]: row for row in s["by_day"]}
    expected_days = Counter(v.at.date().isoformat() for v in accepted)
    assert {d: row["checkins_accepted"] for d, row in by_day.items() if row["checkins_accepted"]} == expected_days
    # One clock: each unlock on the day of the (back-dated) visit that earned it, not the day it was sent.
    unlock_days = Counter(v.at.date().isoformat() for v in accepted if arm[v.user] == "treatment")
    assert {d: row["unlocks"] for d, row in by_day.items() if row["unlocks"]} == unlock_days
    exposed_days = Counter((u.first_at.date().isoformat(), u.arm) for u in users)
    assert {
        (d, a): row[f"exposed_{a}"]
        for d, row in by_day.items()
        for a in ("treatment", "control")
        if row[f"exposed_{a}"]
    } == exposed_days
    by_venue = {row["venue_id"]: row for row in s["by_venue"]}
    assert {vid: row["checkins_accepted"] for vid, row in by_venue.items()} == Counter(v.venue["id"] for v in accepted)
    assert {vid: row["checkins_rejected"] for vid, row in by_venue.items() if row["checkins_rejected"]} == Counter(
        v.venue["id"] for v in rejected
    )


def _outcomes(simulation, arm: str) -> tuple[np.ndarray, np.ndarray]:
    """Per closed-window user of the arm: returned (0/1) and number of return visits."""
    closed = [u for u in simulation["users"] if u.arm == arm and u.window_closed(simulation["today"])]
    visits = np.array([len(u.returns) for u in closed], dtype=float)
    return (visits > 0).astype(float), visits


def test_effect_per_arm_counts_only_closed_windows(simulation):
    effect, users, today = simulation["stats"]["effect"], simulation["users"], simulation["today"]

    for arm in ("treatment", "control"):
        returned, visits = _outcomes(simulation, arm)
        reported = effect["arms"][arm]
        assert reported["users_exposed"] == sum(u.arm == arm for u in users)
        assert reported["users_window_closed"] == len(returned) < reported["users_exposed"]
        assert reported["returned_users"] == returned.sum()
        assert reported["return_visit_rate"] == pytest.approx(returned.mean(), rel=1e-12)
        assert reported["visits_per_user"] == pytest.approx(visits.mean(), rel=1e-12)
    # Visits after the window, and users whose window is still open (some end today), exist but do not count.
    assert any(u.later for u in users if u.window_closed(today))
    assert any(u.returns for u in users if not u.window_closed(today))
    assert any(u.first_at.date() == today - timedelta(days=ATTRIBUTION_DAYS) for u in users)
    assert effect["attribution_days"] == ATTRIBUTION_DAYS


def test_lift_matches_statsmodels_on_the_raw_outcomes(simulation):
    effect = simulation["stats"]["effect"]
    returned_t, visits_t = _outcomes(simulation, "treatment")
    returned_c, visits_c = _outcomes(simulation, "control")
    x_t, n_t, x_c, n_c = int(returned_t.sum()), len(returned_t), int(returned_c.sum()), len(returned_c)

    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff")
    lift = effect["absolute_lift"]
    assert lift["estimate"] == pytest.approx(returned_t.mean() - returned_c.mean(), abs=1e-12)
    assert (lift["ci_low"], lift["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    _, p_value = proportions_ztest(np.array([x_t, x_c]), np.array([n_t, n_c]))
    assert effect["p_value"] == pytest.approx(p_value, rel=1e-9)

    ratio_low, ratio_high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="log", compare="ratio")
    relative = effect["relative_lift"]
    assert relative["estimate"] == pytest.approx(returned_t.mean() / returned_c.mean() - 1, rel=1e-12)
    assert (relative["ci_low"], relative["ci_high"]) == pytest.approx((ratio_low - 1, ratio_high - 1), rel=1e-10)

    welch = scipy_stats.ttest_ind(visits_t, visits_c, equal_var=False).confidence_interval(0.95)
    diff = effect["visits_per_user_diff"]
    assert diff["estimate"] == pytest.approx(visits_t.mean() - visits_c.mean(), abs=1e-12)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((welch.low, welch.high), rel=1e-9)
    assert effect["incremental_visits"] == pytest.approx(diff["estimate"] * n_t, rel=1e-12)
    p_c = returned_c.mean()
    assert effect["minimum_detectable_effect"] == pytest.approx(
        (1.959963984540054 + 0.8416212335729143) * math.sqrt(p_c * (1 - p_c) * (1 / n_t + 1 / n_c)), rel=1e-9
    )


def test_lift_recovers_the_true_effect(simulation):
    lift = simulation["stats"]["effect"]["absolute_lift"]
    n_t = simulation["stats"]["effect"]["arms"]["treatment"]["users_window_closed"]
    n_c = simulation["stats"]["effect"]["arms"]["control"]["users_window_closed"]
    p_t, p_c = P_CONTROL + LIFT, P_CONTROL
    standard_error = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)

    # Five standard errors: a correct pipeline fails this about once in 1.7 million runs; swapped
    # arms, a lost return visit or an open window counted as closed fail it every time.
    assert abs(lift["estimate"] - LIFT) < 5 * standard_error
    assert lift["ci_low"] < lift["estimate"] < lift["ci_high"]
    assert lift["ci_high"] - lift["ci_low"] < 4.5 * standard_error


def test_sample_ratio_and_status_of_a_correct_assignment(simulation):
    s = simulation["stats"]
    n_t, n_c = s["funnel"]["exposures"]["treatment"], s["funnel"]["exposures"]["control"]
    total = n_t + n_c
    expected = scipy_stats.chisquare([n_t, n_c], f_exp=[total * 0.7, total * 0.3]).pvalue

    assert s["effect"]["srm"]["p_value"] == pytest.approx(expected, rel=1e-9)
    assert s["effect"]["srm"]["observed_control_share"] == pytest.approx(n_c / total)
    assert s["effect"]["srm"]["expected_control_share"] == HOLDOUT_PERCENT / 100
    # The md5 assignment is as good as random: p < 0.001 happens in 1 run of 1000.
    assert s["status"] == ("srm_alert" if expected < 0.001 else "ready")


def test_a_broken_assignment_raises_the_srm_alert(world, db):
    """Control users' check-ins get lost (say, an app build that drops them): the arms no
    longer split 70/30, and the stats say so instead of reporting a lift."""
    m, venues, campaign = simulated_campaign(world)
    salt = db.execute("SELECT assignment_salt FROM campaigns WHERE id = %s", [campaign["id"]]).fetchone()
    rng = random.Random(7)
    today = datetime.now(UTC).date()
    visits, dropped = [], 0
    for _ in range(800):
        user = f"sim-{uuid.uuid4().hex[:12]}"
        bucket = db.execute("SELECT assignment_bucket(%s, %s) AS b", [salt["assignment_salt"], user]).fetchone()["b"]
        if bucket < HOLDOUT_PERCENT * 100 and rng.random() < 0.6:
            dropped += 1
            continue
        at = day_start(rng.randint(ATTRIBUTION_DAYS + 1, 30), today) + timedelta(seconds=rng.uniform(0, 86_399))
        visits.append(Visit(user, at, rng.choice(venues)))
    run_checkins(db, visits)

    s = get_stats(world, m, campaign)

    n_t, n_c = s["funnel"]["exposures"]["treatment"], s["funnel"]["exposures"]["control"]
    assert dropped > 0 and n_t + n_c == len(visits)
    assert s["effect"]["srm"]["alert"] is True
    assert s["effect"]["srm"]["p_value"] < 1e-6
    assert s["status"] == "srm_alert"


def test_small_samples_are_below_min_data_and_open_windows_are_collecting(world, db):
    m, venues, small = simulated_campaign(world)
    today = datetime.now(UTC).date()
    rng = random.Random(11)
    run_checkins(
        db,
        [
            Visit(
                f"sim-{uuid.uuid4().hex[:12]}",
                day_start(ATTRIBUTION_DAYS + 2, today) + timedelta(seconds=rng.uniform(0, 86_399)),
                venues[0],
            )
            for _ in range(40)
        ],
    )
    m2, venues2, recent = simulated_campaign(world)
    run_checkins(
        db,
        [
            Visit(
                f"sim-{uuid.uuid4().hex[:12]}",
                day_start(2, today) + timedelta(seconds=rng.uniform(0, 86_399)),
                venues2[0],
            )
            for _ in range(200)
        ],
    )

    small_stats, recent_stats = get_stats(world, m, small), get_stats(world, m2, recent)

    closed = [a["users_window_closed"] for a in small_stats["effect"]["arms"].values()]
    assert sum(closed) == 40 and min(closed) < 50
    assert small_stats["status"] == ("srm_alert" if small_stats["effect"]["srm"]["alert"] else "below_min_data")
    assert recent_stats["funnel"]["unique_users"] == 200
    assert [a["users_window_closed"] for a in recent_stats["effect"]["arms"].values()] == [0, 0]
    assert recent_stats["status"] == ("srm_alert" if recent_stats["effect"]["srm"]["alert"] else "collecting")
    assert recent_stats["effect"]["absolute_lift"] is None


def test_redemptions_in_the_simulated_campaign_reach_the_funnel(simulation, world, db):
    m, campaign = simulation["merchant"], simulation["campaign"]
    unlocks = db.execute(
        """SELECT id, code, venue_id FROM unlocks WHERE campaign_id = %s
                            ORDER BY id LIMIT 3""",
        [campaign["id"]],
    ).fetchall()
    for u in unlocks:
        r = world.http.post(
            "/v1/redemptions", json={"code": u["code"], "venue_id": str(u["venue_id"])}, headers=m.staff
        )
        assert r.status_code == 201, r.text

    funnel = get_stats(world, m, campaign)["funnel"]

    assert funnel["redemptions"] == len(unlocks) == 3
    assert funnel["time_to_redeem_minutes"]["redeemed"] == 3
    assert funnel["redemption_rate_of_unlocks"] == pytest.approx(3 / simulation["stats"]["funnel"]["unlocks"])


def test_a_return_visit_after_the_campaign_ended_still_counts(world, db):
    """Ending (or pausing) a campaign must not cut open attribution windows short: the
    analysis closes windows by date, so visits inside them count whatever the status."""
    merchant = world.merchant()
    venue = world.venue(merchant)
    campaign = world.campaign(merchant, [venue["id"]], holdout_percent=0, attribution_days=ATTRIBUTION_DAYS)
    lon, lat = venue["center"]
    user, first = f"sim-{uuid.uuid4().hex[:10]}", datetime.now(UTC) - timedelta(days=ATTRIBUTION_DAYS + 3)

    def visit(at: datetime) -> None:
        db.execute(
            CHECKIN_SQL,
            {"user": user, "key": str(uuid.uuid4()), "lon": lon, "lat": lat, "at": at, "reason": None, "detail": None},
        )

    visit(first)
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/end", headers=merchant.admin).status_code == 200
    visit(first + timedelta(days=2))

    row = db.execute(
        "SELECT return_visits FROM exposures WHERE campaign_id = %s AND user_id = %s", (campaign["id"], user)
    ).fetchone()
    assert row["return_visits"] == 1
    treatment = get_stats(world, merchant, campaign)["effect"]["arms"]["treatment"]
    assert (treatment["users_window_closed"], treatment["returned_users"]) == (1, 1)
