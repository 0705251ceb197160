"""Ghost unlocks and the sums for triggered and CUPED-adjusted effects.

A control user's accepted check-in that meets an offer's rule, within its per-user limit and while
its budget has units left, records a ghost_unlock event: no code, nothing the user or a webhook
sees, the budget not taken. A user's first unlock, real or ghost, triggers them. The sums the
effect is read from (offers/effect_sums.py) hold, per arm, the users exposed and triggered, their
return visits, and their visits in the 28 days before exposure (the CUPED covariate)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from core.db import make_engine
from offers.effect_sums import ArmSums, effect_sums
from offers.webhooks.outbox import OUTBOX_TYPES
from tests.factories import offer_body


@pytest.fixture
def multi_visit(monkeypatch, settings):
    """Server configuration for sending past visits: no cool-down, fixes up to 60 days old."""
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    monkeypatch.setattr(settings, "max_fix_age_s", 60 * 86400)
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 1000)


def users_in(db, campaign: dict, arm: str, n: int) -> list[tuple[str, dict[str, str]]]:
    """n new users the campaign's assignment puts in `arm` (recomputed from its salt)."""
    salt = db.execute("SELECT assignment_salt FROM campaigns WHERE id = %s", (campaign["id"],)).fetchone()[
        "assignment_salt"
    ]
    found: list[str] = []
    while len(found) < n:
        sub = f"user-{uuid.uuid4().hex[:12]}"
        bucket = int(hashlib.md5(f"{salt}:{sub}".encode()).hexdigest()[:8], 16) % 10_000
        if (bucket < campaign["holdout_percent"] * 100) == (arm == "control"):
            found.append(sub)
    return found


def visit(world, sub: str, venue: dict, at: datetime | None = None) -> dict:
    r = world.checkin(world.user(sub), *venue["center"], observed_at=at)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "accepted", body
    return body


def ghosts(db, campaign: dict, sub: str) -> list[dict]:
    return db.execute(
        "SELECT * FROM events WHERE campaign_id = %s AND user_id = %s AND type = 'ghost_unlock' ORDER BY id",
        (campaign["id"], sub),
    ).fetchall()


def exposure(db, campaign: dict, sub: str) -> dict:
    return db.execute(
        "SELECT * FROM exposures WHERE campaign_id = %s AND user_id = %s", (campaign["id"], sub)
    ).fetchone()


def budget_left(db, offer_id: str) -> int:
    return db.execute(
        "SELECT sum(remaining)::int AS n FROM offer_budget_shards WHERE offer_id = %s", (offer_id,)
    ).fetchone()["n"]


def one_offer(world, holdout_percent: int = 50, **offer) -> tuple[dict, dict, str]:
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(**offer)], holdout_percent=holdout_percent)
    return venue, campaign, campaign["offers"][0]["id"]


def test_over_http_a_control_user_ghost_unlocks_and_sees_nothing(world, db):
    venue, campaign, offer_id = one_offer(world)
    (control,) = users_in(db, campaign, "control", 1)
    (treated,) = users_in(db, campaign, "treatment", 1)

    body = visit(world, control, venue)
    assert body["unlocked"] == []
    (ghost,) = ghosts(db, campaign, control)
    assert (ghost["offer_id"], ghost["checkin_id"], ghost["venue_id"]) == (
        uuid.UUID(offer_id),
        uuid.UUID(body["id"]),
        uuid.UUID(venue["id"]),
    )
    assert (ghost["arm"], ghost["unlock_id"], ghost["data"]) == ("control", None, None)
    assert exposure(db, campaign, control)["triggered_at"] is not None
    # no code anywhere: no unlock row, an empty wallet, and the event is not a kind the outbox reads
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE user_id = %s", (control,)).fetchone()["n"] == 0
    assert world.http.get("/v1/me/offers", headers=world.user(control)).json()["items"] == []
    assert "ghost_unlock" not in OUTBOX_TYPES
    outboxed = db.execute(
        "SELECT count(*) AS n FROM events WHERE user_id = %s AND type IN ({})".format(
            ", ".join(f"'{t}'" for t in OUTBOX_TYPES)
        ),
        (control,),
    ).fetchone()
    assert outboxed["n"] == 0

    real = visit(world, treated, venue)
    assert len(real["unlocked"]) == 1 and ghosts(db, campaign, treated) == []
    assert exposure(db, campaign, treated)["triggered_at"] is not None
    assert budget_left(db, offer_id) == 1000 - 1


def test_the_per_user_limit_counts_ghost_unlocks_as_it_counts_real_ones(world, db, multi_visit):
    venue, campaign, offer_id = one_offer(world, per_user_limit=2)
    (control,) = users_in(db, campaign, "control", 1)
    (treated,) = users_in(db, campaign, "treatment", 1)
    start = datetime.now(UTC) - timedelta(minutes=10)

    control_bodies = [visit(world, control, venue, start + timedelta(minutes=i)) for i in range(3)]
    treated_bodies = [visit(world, treated, venue, start + timedelta(minutes=i)) for i in range(3)]

    assert [len(b["unlocked"]) for b in treated_bodies] == [1, 1, 0]
    assert [b["unlocked"] for b in control_bodies] == [[], [], []]
    assert [g["checkin_id"] for g in ghosts(db, campaign, control)] == [uuid.UUID(b["id"]) for b in control_bodies[:2]]
    limits = db.execute("SELECT user_id, unlocks FROM user_offer_unlocks WHERE offer_id = %s", (offer_id,)).fetchall()
    assert {r["user_id"]: r["unlocks"] for r in limits} == {control: 2, treated: 2}
    assert budget_left(db, offer_id) == 1000 - 2  # ghosts take nothing
    # triggered at the first unlock, real or ghost, and not moved by later ones
    for sub, bodies in ((control, control_bodies), (treated, treated_bodies)):
        first = db.execute("SELECT observed_at FROM checkins WHERE id = %s", (bodies[0]["id"],)).fetchone()
        assert exposure(db, campaign, sub)["triggered_at"] == first["observed_at"]


def test_when_the_budget_runs_out_both_arms_stop_triggering(world, db):
    venue, campaign, offer_id = one_offer(world, total_limit=2)
    early_control, late_control = users_in(db, campaign, "control", 2)
    first, second, late_treated = users_in(db, campaign, "treatment", 3)

    visit(world, early_control, venue)  # judged against a budget of 2, takes none of it
    assert len(ghosts(db, campaign, early_control)) == 1 and budget_left(db, offer_id) == 2
    assert len(visit(world, first, venue)["unlocked"]) == 1
    assert len(visit(world, second, venue)["unlocked"]) == 1
    assert budget_left(db, offer_id) == 0

    assert visit(world, late_treated, venue)["unlocked"] == []
    assert visit(world, late_control, venue)["unlocked"] == []
    assert ghosts(db, campaign, late_control) == []
    triggered = {
        r["user_id"]: r["triggered_at"] is not None
        for r in db.execute(
            "SELECT user_id, triggered_at FROM exposures WHERE campaign_id = %s", (campaign["id"],)
        ).fetchall()
    }
    assert triggered == {early_control: True, first: True, second: True, late_treated: False, late_control: False}
    # the spent per-user count of a refused ghost is given back, as a refused unlock's is
    assert (
        db.execute(
            "SELECT count(*) AS n FROM user_offer_unlocks WHERE offer_id = %s AND user_id = %s",
            (offer_id, late_control),
        ).fetchone()["n"]
        == 0
    )


def read_sums(settings, campaign_id: str, attribution_days: int, today: date) -> dict[str, dict[str, ArmSums]]:
    async def read() -> dict[str, dict[str, ArmSums]]:
        engine = make_engine(settings.database_url, 1)
        try:
            async with async_sessionmaker(engine)() as session:
                return await effect_sums(session, campaign_id, attribution_days, today)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_triggered_and_cuped_sums_are_what_the_visits_make(world, db, multi_visit, settings):
    """Every second visit unlocks (nth_checkin, n = 2), so a user is exposed at their first visit
    and triggered at their second; visits before the campaign started are the pre-period."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(
        m,
        [venue["id"]],
        [offer_body(rule={"type": "nth_checkin", "n": 2})],
        holdout_percent=50,
        attribution_days=14,
        starts_at=now - timedelta(days=25),
    )
    t1, t2 = users_in(db, campaign, "treatment", 2)
    c1, c2 = users_in(db, campaign, "control", 2)

    def days_ago(d: float) -> datetime:
        return now - timedelta(days=d)

    # t1: pre-period visits at 50 (more than 28 days before exposure), 30 and 27 days ago: x = 2.
    # Exposed 20 days ago, triggered 19 days ago. ITT window to day -6: visits -19, -10 (y = 2).
    # Triggered window to day -5: visits -10, -5.8, -5.5 (y = 3).
    for d in (50, 30, 27, 20, 19, 10, 5.8, 5.5):
        visit(world, t1, venue, days_ago(d))
    # t2: exposed and triggered today, its windows still open.
    visit(world, t2, venue, datetime.now(UTC) - timedelta(hours=1))
    visit(world, t2, venue)
    # c1: x = 1; exposed 20 days ago, ghost-triggered 19 days ago; ITT y = 2, triggered y = 1.
    for d in (27, 20, 19, 10):
        visit(world, c1, venue, days_ago(d))
    # c2: exposed 20 days ago and never again: never triggered.
    visit(world, c2, venue, days_ago(20))

    assert [len(ghosts(db, campaign, s)) for s in (c1, c2)] == [1, 0]
    rows = {s: exposure(db, campaign, s) for s in (t1, t2, c1, c2)}
    assert {s: (r["pre_period_visits"], r["return_visits"], r["triggered_visits"]) for s, r in rows.items()} == {
        t1: (2, 2, 3),
        t2: (0, 1, 0),
        c1: (1, 2, 1),
        c2: (0, 0, 0),
    }
    assert rows[c2]["triggered_at"] is None

    sums = read_sums(settings, campaign["id"], 14, datetime.now(UTC).date())
    assert sums == {
        "itt": {
            "treatment": ArmSums(
                users=2, closed_users=1, returned=1, visits=2, visits_sq=4, pre=2, pre_sq=4, pre_visits=4
            ),
            "control": ArmSums(
                users=2, closed_users=2, returned=1, visits=2, visits_sq=4, pre=1, pre_sq=1, pre_visits=2
            ),
        },
        "triggered": {
            "treatment": ArmSums(
                users=2, closed_users=1, returned=1, visits=3, visits_sq=9, pre=2, pre_sq=4, pre_visits=6
            ),
            "control": ArmSums(
                users=1, closed_users=1, returned=1, visits=1, visits_sq=1, pre=1, pre_sq=1, pre_visits=1
            ),
        },
    }
    # a campaign with no exposures yet: every sum 0
    empty = read_sums(settings, str(uuid.uuid4()), 14, datetime.now(UTC).date())
    assert empty == {a: {"treatment": ArmSums(), "control": ArmSums()} for a in ("itt", "triggered")}


def test_a_group_unlocks_each_member_by_their_arm_whoever_completes_it(world, db, multi_visit):
    venue, campaign, offer_id = one_offer(
        world, rule={"type": "group", "min_people": 3, "within_minutes": 30}, per_user_limit=1
    )
    (treated,) = users_in(db, campaign, "treatment", 1)
    waiting, completing = users_in(db, campaign, "control", 2)
    now = datetime.now(UTC)

    assert visit(world, treated, venue, now - timedelta(minutes=20))["unlocked"] == []
    assert visit(world, waiting, venue, now - timedelta(minutes=10))["unlocked"] == []
    assert visit(world, completing, venue, now)["unlocked"] == []  # a control user completes it

    wallet = world.http.get("/v1/me/offers", headers=world.user(treated)).json()["items"]
    assert [w["title"] for w in wallet] == ["Free cinnamon bun"]
    assert [len(ghosts(db, campaign, s)) for s in (waiting, completing)] == [1, 1]
    assert all(exposure(db, campaign, s)["triggered_at"] is not None for s in (treated, waiting, completing))
    assert budget_left(db, offer_id) == 1000 - 1
