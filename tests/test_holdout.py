"""The randomized holdout: a deterministic hash of (salt, user) puts holdout_percent of a
campaign's users in control. Control users are recorded like everyone else but never
unlock (where treatment would, they ghost-unlock, unseen); the arm is fixed at the first
accepted check-in and never changes; a rejected check-in assigns nothing."""

from __future__ import annotations

import hashlib
import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import offer_body

# Many users straight through the database function the API calls, a few hundred per statement.
CHECKIN_MANY_SQL = """
    SELECT r #>> '{response,status}' AS status, jsonb_array_length(r #> '{response,unlocked}') AS unlocked
    FROM generate_series(%(first)s::int, %(last)s::int) AS i,
         LATERAL checkin(%(prefix)s || i, 'key', 'hash', %(lon)s, %(lat)s, 10, now(), NULL, NULL, NULL,
                         NULL, NULL, 250, interval '15 minutes') AS r
"""


def expected_arm(salt: str, user: str, holdout_percent: int) -> str:
    """The assignment, recomputed independently of the database."""
    bucket = int(hashlib.md5(f"{salt}:{user}".encode()).hexdigest()[:8], 16) % 10_000
    return "control" if bucket < holdout_percent * 100 else "treatment"


def campaign_with_holdout(world, holdout_percent: int) -> tuple[dict, dict, object]:
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(total_limit=100_000)], holdout_percent=holdout_percent)
    return venue, campaign, m


def arms(db, campaign_id: str) -> dict[str, str]:
    rows = db.execute("SELECT user_id, arm FROM exposures WHERE campaign_id = %s", (campaign_id,)).fetchall()
    return {r["user_id"]: r["arm"] for r in rows}


def test_the_control_share_matches_holdout_percent_over_many_users(world, db):
    holdout, users = 20, 2400
    venue, campaign, _ = campaign_with_holdout(world, holdout)
    prefix = f"holdout-{uuid.uuid4().hex[:8]}-"
    results = []
    for first in range(1, users + 1, 300):
        results += db.execute(
            CHECKIN_MANY_SQL,
            {
                "first": first,
                "last": min(first + 299, users),
                "prefix": prefix,
                "lon": venue["center"][0],
                "lat": venue["center"][1],
            },
        ).fetchall()
    assert len(results) == users and {r["status"] for r in results} == {"accepted"}

    assigned = arms(db, campaign["id"])
    assert len(assigned) == users
    control = sum(arm == "control" for arm in assigned.values())
    mean, sd = users * holdout / 100, math.sqrt(users * holdout / 100 * (1 - holdout / 100))
    assert abs(control - mean) <= 4 * sd, (control, mean, sd)

    salt = db.execute("SELECT assignment_salt FROM campaigns WHERE id = %s", (campaign["id"],)).fetchone()[
        "assignment_salt"
    ]
    assert all(arm == expected_arm(salt, user, holdout) for user, arm in assigned.items())

    unlocked = {
        r["user_id"]
        for r in db.execute("SELECT user_id FROM unlocks WHERE campaign_id = %s", (campaign["id"],)).fetchall()
    }
    assert unlocked == {user for user, arm in assigned.items() if arm == "treatment"}
    assert sum(r["unlocked"] for r in results) == users - control

    events = db.execute(
        "SELECT type, arm, count(*) AS n FROM events WHERE campaign_id = %s GROUP BY type, arm", (campaign["id"],)
    ).fetchall()
    assert {(e["type"], e["arm"]): e["n"] for e in events} == {
        ("exposure", "control"): control,
        ("exposure", "treatment"): users - control,
        ("checkin_accepted", "control"): control,
        ("checkin_accepted", "treatment"): users - control,
        ("offer_unlocked", "treatment"): users - control,
        ("ghost_unlock", "control"): control,  # where treatment unlocks, control ghost-unlocks
    }
    effect = db.execute(
        "SELECT arm, sum(users)::int AS users FROM campaign_effect WHERE campaign_id = %s GROUP BY arm",
        (campaign["id"],),
    ).fetchall()
    assert {e["arm"]: e["users"] for e in effect} == {"control": control, "treatment": users - control}


def test_the_same_user_lands_in_independent_arms_of_two_campaigns(world, db):
    """Each campaign has its own salt, so being in one control group says nothing about another."""
    m = world.merchant()
    venue = world.venue(m)
    a, b = (world.campaign(m, [venue["id"]], [offer_body()], holdout_percent=50) for _ in range(2))
    db.execute(
        CHECKIN_MANY_SQL,
        {
            "first": 1,
            "last": 400,
            "prefix": f"both-{uuid.uuid4().hex[:8]}-",
            "lon": venue["center"][0],
            "lat": venue["center"][1],
        },
    ).fetchall()
    in_a, in_b = arms(db, a["id"]), arms(db, b["id"])
    assert len(in_a) == len(in_b) == 400
    agree = sum(in_a[user] == in_b[user] for user in in_a)
    assert abs(agree - 200) <= 4 * math.sqrt(400 * 0.25)  # as if by coin flips, not identical


def test_over_http_control_users_are_accepted_and_recorded_but_never_unlock(world, db, base_url):
    import httpx

    venue, campaign, _ = campaign_with_holdout(world, 50)
    subs = [f"user-{uuid.uuid4().hex[:12]}" for _ in range(120)]

    def check_in(sub: str) -> dict:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            r = client.post(
                "/v1/checkins",
                headers={**world.user(sub), "Idempotency-Key": str(uuid.uuid4())},
                json={
                    "lon": venue["center"][0],
                    "lat": venue["center"][1],
                    "accuracy_m": 10,
                    "observed_at": datetime.now(UTC).isoformat(),
                },
            )
        assert r.status_code == 201, r.text
        return r.json()

    with ThreadPoolExecutor(12) as pool:
        bodies = dict(zip(subs, pool.map(check_in, subs), strict=True))
    assigned = arms(db, campaign["id"])
    control = [s for s in subs if assigned[s] == "control"]
    treatment = [s for s in subs if assigned[s] == "treatment"]
    assert control and treatment and len(control) + len(treatment) == len(subs)

    assert all(bodies[s]["status"] == "accepted" and bodies[s]["unlocked"] == [] for s in control)
    assert all(bodies[s]["status"] == "accepted" and len(bodies[s]["unlocked"]) == 1 for s in treatment)
    for sub in control:
        assert world.http.get("/v1/me/offers", headers=world.user(sub)).json()["items"] == []
    recorded = db.execute(
        "SELECT user_id, arm FROM events WHERE campaign_id = %s AND type = 'checkin_accepted'", (campaign["id"],)
    ).fetchall()
    assert {r["user_id"]: r["arm"] for r in recorded} == assigned


def test_the_arm_never_changes_on_later_check_ins(world, db, monkeypatch, settings):
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    venue, campaign, _ = campaign_with_holdout(world, 50)
    found: dict[str, str] = {}
    while {"control", "treatment"} - set(found.values()):  # one user of each arm (a coin flip per user)
        sub = f"user-{uuid.uuid4().hex[:12]}"
        world.checkin(world.user(sub), *venue["center"], observed_at=datetime.now(UTC) - timedelta(minutes=5))
        found[sub] = arms(db, campaign["id"])[sub]

    for sub, arm in found.items():
        before = db.execute(
            "SELECT * FROM exposures WHERE campaign_id = %s AND user_id = %s", (campaign["id"], sub)
        ).fetchone()
        bodies = [world.checkin(world.user(sub), *venue["center"]).json() for _ in range(3)]
        after = db.execute(
            "SELECT * FROM exposures WHERE campaign_id = %s AND user_id = %s", (campaign["id"], sub)
        ).fetchone()
        assert all(b["status"] == "accepted" for b in bodies)
        counts = ("return_visits", "triggered_visits")
        assert {k: v for k, v in after.items() if k not in counts} == {
            k: v for k, v in before.items() if k not in counts
        }
        assert (before["return_visits"], after["return_visits"]) == (0, 3)
        # both arms were triggered by the exposing visit (a real or a ghost unlock)
        assert (before["triggered_visits"], after["triggered_visits"]) == (0, 3)
        assert [len(b["unlocked"]) for b in bodies] == ([0, 0, 0] if arm == "control" else [1, 1, 1])


def test_a_rejected_check_in_assigns_no_arm(world, db, settings):
    venue, campaign, _ = campaign_with_holdout(world, 50)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)
    stale = world.checkin(
        user, *venue["center"], observed_at=datetime.now(UTC) - timedelta(seconds=settings.max_fix_age_s + 30)
    ).json()
    assert stale["reason"] == "stale"
    assert sub not in arms(db, campaign["id"])
    event = db.execute(
        "SELECT type, arm, reason FROM events WHERE checkin_id = %s AND campaign_id = %s", (stale["id"], campaign["id"])
    ).fetchone()
    assert (event["type"], event["arm"], event["reason"]) == ("checkin_rejected", None, "stale")

    accepted = world.checkin(user, *venue["center"]).json()
    exposure = db.execute(
        "SELECT checkin_id, exposed_at FROM exposures WHERE campaign_id = %s AND user_id = %s", (campaign["id"], sub)
    ).fetchone()
    assert str(exposure["checkin_id"]) == accepted["id"]


@pytest.mark.parametrize("holdout_percent", [0, 50])
def test_holdout_percent_bounds(world, db, holdout_percent):
    venue, campaign, _ = campaign_with_holdout(world, holdout_percent)
    prefix = f"bounds-{uuid.uuid4().hex[:8]}-"
    db.execute(
        CHECKIN_MANY_SQL,
        {"first": 1, "last": 300, "prefix": prefix, "lon": venue["center"][0], "lat": venue["center"][1]},
    ).fetchall()
    control = sum(arm == "control" for arm in arms(db, campaign["id"]).values())
    if holdout_percent == 0:
        assert control == 0
    else:
        assert abs(control - 150) <= 4 * math.sqrt(300 * 0.25)
