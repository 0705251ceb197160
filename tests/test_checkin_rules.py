"""Every offer rule and the schedule, proven through real HTTP check-ins; the codes they
hand out; and the wallet that shows them.

Multi-visit rules need several check-ins of one user at one venue, so these tests
configure the live server (the same Settings singleton) with no cool-down and a fix age
limit of days: then past visits are sent with their real `observed_at`.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.factories import near, new_user, offer_body

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@pytest.fixture
def multi_visit(monkeypatch, settings):
    """Server configuration for sending past visits: no cool-down, fixes up to 60 days old."""
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    monkeypatch.setattr(settings, "max_fix_age_s", 60 * 86400)
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 1000)


def visit(world, user, venue, at: datetime | None = None, **extra) -> dict:
    r = world.checkin(user, *venue["center"], observed_at=at, **extra)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "accepted", body
    return body


def unlocked_titles(body: dict) -> list[str]:
    return sorted(u["title"] for u in body["unlocked"])


def one_offer_campaign(world, rule: dict, venues: int = 1, **offer) -> tuple[list[dict], dict]:
    m = world.merchant()
    first = world.venue(m)
    places = [first] + [world.venue(m, center=near(first["center"], east_m=300 * i)) for i in range(1, venues)]
    campaign = world.campaign(m, [v["id"] for v in places], [offer_body(rule=rule, **offer)])
    return places, campaign


def test_every_checkin_unlocks_each_accepted_visit_with_a_fresh_code(world, multi_visit, db):
    (venue,), campaign = one_offer_campaign(world, {"type": "every_checkin"}, redeem_within_minutes=45)
    sub, user = new_user(world)
    now = datetime.now(UTC)
    bodies = [visit(world, user, venue, now - timedelta(minutes=40)), visit(world, user, venue, now)]

    assert [len(b["unlocked"]) for b in bodies] == [1, 1]
    codes = [b["unlocked"][0]["code"] for b in bodies]
    assert all(CODE.match(c) for c in codes) and codes[0] != codes[1]
    rows = db.execute(
        "SELECT code, unlocked_at, expires_at, checkin_id FROM unlocks WHERE user_id = %s ORDER BY unlocked_at", (sub,)
    ).fetchall()
    assert [r["code"] for r in rows] == codes
    for row, body in zip(rows, bodies, strict=True):
        assert row["expires_at"] - row["unlocked_at"] == timedelta(minutes=45)
        assert datetime.fromisoformat(body["unlocked"][0]["expires_at"]) == row["expires_at"]
        assert str(row["checkin_id"]) == body["id"]
    offer = campaign["offers"][0]
    assert bodies[0]["unlocked"][0] | {"code": None, "unlock_id": None, "expires_at": None} == {
        "offer_id": offer["id"],
        "title": offer["title"],
        "description": offer["description"],
        "terms": offer["terms"],
        "code": None,
        "unlock_id": None,
        "expires_at": None,
    }


def test_codes_use_all_sixty_bits_of_crockford_base32(db):
    codes = [r["code"] for r in db.execute("SELECT new_offer_code() AS code FROM generate_series(1, 3000)")]
    assert all(CODE.match(c) for c in codes)
    assert len(set(codes)) == len(codes)
    symbols = [c.replace("-", "") for c in codes]
    for position in range(12):  # 5 random bits each: every one of the 32 symbols turns up
        assert set(s[position] for s in symbols) == set(CROCKFORD), position


def test_first_checkin_is_the_first_accepted_visit_at_any_campaign_venue(world, multi_visit):
    (cafe, bakery), _ = one_offer_campaign(world, {"type": "first_checkin"}, venues=2)
    now = datetime.now(UTC)

    _, newcomer = new_user(world)
    assert len(visit(world, newcomer, cafe, now - timedelta(minutes=40))["unlocked"]) == 1
    assert visit(world, newcomer, cafe, now - timedelta(minutes=20))["unlocked"] == []  # after the cool-down
    assert visit(world, newcomer, bakery, now)["unlocked"] == []  # the campaign's other venue

    _, regular = new_user(world)
    world.checkin(regular, *cafe["center"], observed_at=now - timedelta(minutes=30), mocked=True)  # rejected
    assert len(visit(world, regular, bakery, now)["unlocked"]) == 1  # rejections do not count as visits


def test_nth_checkin_unlocks_every_nth_visit_since_the_campaign_started(world, multi_visit):
    m = world.merchant()
    cafe = world.venue(m)
    bakery = world.venue(m, center=near(cafe["center"], east_m=400))
    now = datetime.now(UTC)
    world.campaign(
        m,
        [cafe["id"], bakery["id"]],
        [offer_body(rule={"type": "nth_checkin", "n": 3})],
        starts_at=now - timedelta(hours=3),
    )
    _, user = new_user(world)
    before_start = visit(world, user, cafe, now - timedelta(hours=4))
    assert before_start["unlocked"] == []

    places = [cafe, bakery, cafe, cafe, bakery, cafe, cafe]
    results = [
        len(visit(world, user, place, now - timedelta(minutes=20 * (7 - i)))["unlocked"])
        for i, place in enumerate(places)
    ]
    assert results == [0, 0, 1, 0, 0, 1, 0]


def test_loyalty_unlocks_the_visit_that_reaches_the_count_inside_the_window(world, multi_visit):
    (venue,), _ = one_offer_campaign(world, {"type": "loyalty", "visits": 3, "within_days": 7})
    now = datetime.now(UTC)
    _, user = new_user(world)
    days_ago = [10, 5, 2, 0]  # the visit 10 days ago has left the 7-day window by the last one
    results = [len(visit(world, user, venue, now - timedelta(days=d, minutes=1))["unlocked"]) for d in days_ago]
    assert results == [0, 0, 0, 1]
    assert visit(world, user, venue, now)["unlocked"] == []  # a 4th visit in the window is past the count


def test_flash_goes_to_the_first_n_distinct_users_each_once(world, multi_visit, db):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(
        m, [venue["id"]], [offer_body(rule={"type": "flash", "first_n": 3}, per_user_limit=5, total_limit=100)]
    )
    now = datetime.now(UTC)
    users = [new_user(world)[1] for _ in range(5)]
    first = visit(world, users[0], venue, now - timedelta(minutes=30))
    again = visit(world, users[0], venue, now - timedelta(minutes=10))
    later = [visit(world, u, venue, now) for u in users[1:]]

    assert len(first["unlocked"]) == 1 and again["unlocked"] == []
    assert [len(b["unlocked"]) for b in later] == [1, 1, 0, 0]
    offer_id = campaign["offers"][0]["id"]
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE offer_id = %s", (offer_id,)).fetchone()["n"] == 3
    after = world.http.get(f"/v1/campaigns/{campaign['id']}", headers=m.admin).json()
    assert after["offers"][0]["remaining"] == 0


def test_group_unlocks_for_every_member_when_the_group_completes(world, multi_visit, db):
    m = world.merchant()
    pub = world.venue(m)
    other_room = world.venue(m, center=near(pub["center"], east_m=500))
    offer = offer_body(
        rule={"type": "group", "min_people": 3, "within_minutes": 30}, title="Round on the house", per_user_limit=1
    )
    campaign = world.campaign(m, [pub["id"], other_room["id"]], [offer])
    now = datetime.now(UTC)
    (a_sub, a), (b_sub, b), (c_sub, c), (_, d) = (new_user(world) for _ in range(4))

    assert visit(world, a, pub, now - timedelta(minutes=20))["unlocked"] == []
    assert visit(world, d, other_room, now - timedelta(minutes=15))["unlocked"] == []  # another venue's group
    assert visit(world, b, pub, now - timedelta(minutes=10))["unlocked"] == []
    completing = visit(world, c, pub, now)
    assert unlocked_titles(completing) == ["Round on the house"]

    for sub, headers in ((a_sub, a), (b_sub, b)):
        wallet = world.http.get("/v1/me/offers", headers=headers).json()["items"]
        assert [(w["title"], w["status"], w["venue"]["id"]) for w in wallet] == [
            ("Round on the house", "active", pub["id"])
        ]
        own_checkin = db.execute(
            "SELECT u.checkin_id, c.user_id FROM unlocks u JOIN checkins c ON c.id = u.checkin_id WHERE u.user_id = %s",
            (sub,),
        ).fetchone()
        assert own_checkin["user_id"] == sub  # each member's unlock points at their own check-in
    assert world.http.get("/v1/me/offers", headers=d).json()["items"] == []
    assert visit(world, a, pub, now)["unlocked"] == []  # a member does not unlock twice
    unlocks = db.execute(
        "SELECT user_id FROM unlocks WHERE campaign_id = %s ORDER BY user_id", (campaign["id"],)
    ).fetchall()
    assert [u["user_id"] for u in unlocks] == sorted([a_sub, b_sub, c_sub])


def _local_noon(days_ago: int, tz: str, hour: int = 12) -> datetime:
    day = (datetime.now(ZoneInfo(tz)) - timedelta(days=days_ago)).date()
    return datetime.combine(day, time(hour), ZoneInfo(tz))


def test_top_visitor_needs_strictly_the_most_distinct_local_days(world, multi_visit):
    tz = "America/New_York"
    m = world.merchant()
    venue = world.venue(m, timezone=tz)
    world.campaign(m, [venue["id"]], [offer_body(rule={"type": "top_visitor", "within_days": 30}, per_user_limit=10)])
    _, a = new_user(world)
    _, b = new_user(world)
    _, old_regular = new_user(world)
    for days_ago in (40, 39, 38, 37):  # four days, all outside the 30-day window
        visit(world, old_regular, venue, _local_noon(days_ago, tz))

    steps = [
        (a, _local_noon(6, tz), 1),  # a: 1 day, nobody else in the window
        (b, _local_noon(5, tz), 0),  # b: 1 day, tie with a
        (b, _local_noon(4, tz), 1),  # b: 2 days > a's 1
        (a, _local_noon(3, tz), 0),  # a: 2 days, tie with b
        (b, _local_noon(2, tz, hour=9), 1),  # b: 3 days > 2
        (b, _local_noon(2, tz, hour=18), 1),  # the same local day again: still 3 > 2
        (a, _local_noon(1, tz), 0),  # a: 3 days, tie
        (a, datetime.now(UTC), 1),  # a: 4 days > 3
    ]
    results = [len(visit(world, user, venue, at)["unlocked"]) for user, at, _ in steps]
    assert results == [expected for _, _, expected in steps]


def _zone_at_local_hour(hour: int, now: datetime) -> str:
    """A fixed-offset IANA zone where `now` falls in the given local hour (offsets span -12..+14)."""
    for offset in range(-12, 15):
        name = "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # IANA's Etc signs are inverted
        if now.astimezone(ZoneInfo(name)).hour == hour:
            return name
    raise AssertionError(f"no zone has local hour {hour}")


def _schedule_campaign(world, tz: str, schedules: dict[str, dict]) -> dict:
    m = world.merchant()
    venue = world.venue(m, timezone=tz)
    world.campaign(
        m, [venue["id"]], [offer_body(title=title, schedule=schedule) for title, schedule in schedules.items()]
    )
    return venue


def _scheduled_titles(world, tz_hour: int, schedules) -> list[str]:
    now = datetime.now(UTC)
    tz = _zone_at_local_hour(tz_hour, now)
    local = now.astimezone(ZoneInfo(tz))
    venue = _schedule_campaign(world, tz, schedules(local))
    return unlocked_titles(visit(world, world.user(), venue, now))


def _iso(day: int) -> int:
    return (day - 1) % 7 + 1


def test_schedule_windows_and_weekdays_in_the_venue_time_zone(world):
    def schedules(local: datetime) -> dict[str, dict]:
        today, hour = local.isoweekday(), local.hour
        return {
            "open window": {"windows": [{"start": f"{hour:02d}:00", "end": f"{hour + 1:02d}:00"}]},
            "later window": {"windows": [{"start": f"{hour + 2:02d}:00", "end": f"{hour + 3:02d}:00"}]},
            "earlier window": {"windows": [{"start": f"{hour - 2:02d}:00", "end": f"{hour:02d}:00"}]},
            "today only": {"weekdays": [today]},
            "not today": {"weekdays": [d for d in range(1, 8) if d != today]},
            "today in a window": {"weekdays": [today], "windows": [{"start": "00:00", "end": "23:59"}]},
            "two windows": {
                "windows": [
                    {"start": f"{hour + 2:02d}:00", "end": f"{hour + 3:02d}:00"},
                    {"start": f"{hour:02d}:00", "end": f"{hour + 1:02d}:00"},
                ]
            },
        }

    assert _scheduled_titles(world, 12, schedules) == ["open window", "today in a window", "today only", "two windows"]


def test_a_window_past_midnight_covers_both_sides_and_belongs_to_the_day_it_starts(world):
    def late_evening(local: datetime) -> dict[str, dict]:  # local time 23:xx
        today = local.isoweekday()
        return {
            "night, starting today": {"weekdays": [today], "windows": [{"start": "22:00", "end": "03:00"}]},
            "night, starting yesterday": {
                "weekdays": [_iso(today - 1)],
                "windows": [{"start": "22:00", "end": "03:00"}],
            },
            "night, any day": {"windows": [{"start": "22:00", "end": "03:00"}]},
            "night ending at midnight": {"windows": [{"start": "22:00", "end": "00:00"}]},
            "early morning": {"windows": [{"start": "00:00", "end": "03:00"}]},
        }

    def small_hours(local: datetime) -> dict[str, dict]:  # local time 01:xx
        today = local.isoweekday()
        return {
            "night, starting today": {"weekdays": [today], "windows": [{"start": "22:00", "end": "03:00"}]},
            "night, starting yesterday": {
                "weekdays": [_iso(today - 1)],
                "windows": [{"start": "22:00", "end": "03:00"}],
            },
            "night, any day": {"windows": [{"start": "22:00", "end": "03:00"}]},
            "night ending at one": {"windows": [{"start": "22:00", "end": "01:00"}]},
            "night starting at two": {"windows": [{"start": "02:00", "end": "01:00"}]},
        }

    assert _scheduled_titles(world, 23, late_evening) == [
        "night ending at midnight",
        "night, any day",
        "night, starting today",
    ]
    assert _scheduled_titles(world, 1, small_hours) == ["night, any day", "night, starting yesterday"]


def test_the_schedule_uses_the_venue_time_zone_not_utc(world):
    now = datetime.now(UTC)
    tz = _zone_at_local_hour((now.hour + 12) % 24, now)  # local time half a day away from UTC
    local_hour = now.astimezone(ZoneInfo(tz)).hour
    venue = _schedule_campaign(
        world,
        tz,
        {
            "local hour": {"windows": [{"start": f"{local_hour:02d}:00", "end": f"{(local_hour + 1) % 24:02d}:00"}]},
            "utc hour": {"windows": [{"start": f"{now.hour:02d}:00", "end": f"{(now.hour + 1) % 24:02d}:00"}]},
        },
    )
    assert unlocked_titles(visit(world, world.user(), venue, now)) == ["local hour"]


def test_per_user_limit_caps_a_users_unlocks_of_an_offer(world, multi_visit):
    (venue,), _ = one_offer_campaign(world, {"type": "every_checkin"}, per_user_limit=2)
    now = datetime.now(UTC)
    _, user = new_user(world)
    results = [len(visit(world, user, venue, now - timedelta(minutes=m))["unlocked"]) for m in (30, 20, 10, 0)]
    assert results == [1, 1, 0, 0]
    _, other = new_user(world)
    assert len(visit(world, other, venue, now)["unlocked"]) == 1


def test_campaign_status_and_dates_gate_unlocking(world, multi_visit):
    m = world.merchant()
    venue = world.venue(m)
    draft = world.campaign(m, [venue["id"]], [offer_body(title="draft")], activate=False)
    world.campaign(m, [venue["id"]], [offer_body(title="running")])
    paused = world.campaign(m, [venue["id"]], [offer_body(title="paused")])
    assert world.http.post(f"/v1/campaigns/{paused['id']}/pause", headers=m.admin).status_code == 200
    now = datetime.now(UTC)
    later = world.campaign(m, [venue["id"]], [offer_body(title="later")], starts_at=now + timedelta(hours=1))
    assert draft["status"] == "draft" and later["status"] == "active"

    assert unlocked_titles(visit(world, world.user(), venue, now)) == ["running"]
    # before its start the running campaign did not run either
    assert unlocked_titles(visit(world, world.user(), venue, now - timedelta(days=31))) == []


def test_wallet_shows_the_callers_unlocks_with_their_state(world, db):
    m = world.merchant()
    venue = world.venue(m, name="Tapperiet")
    world.campaign(
        m,
        [venue["id"]],
        [
            offer_body(title="Coffee", redeem_within_minutes=1),
            offer_body(title="Bun", redeem_within_minutes=60),
            offer_body(title="Juice", redeem_within_minutes=60),
        ],
    )
    sub, user = new_user(world)
    body = visit(world, user, venue)
    codes = {u["title"]: u["code"] for u in body["unlocked"]}
    assert set(codes) == {"Coffee", "Bun", "Juice"}

    redeemed = world.http.post(
        "/v1/redemptions",
        json={"code": codes["Juice"], "venue_id": venue["id"]},
        headers={**m.staff, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert redeemed.status_code == 201, redeemed.text
    # test data: the one-minute coffee code has run out
    db.execute("UPDATE unlocks SET expires_at = now() - interval '1 second' WHERE code = %s", (codes["Coffee"],))
    _, stranger = new_user(world)
    visit(world, stranger, venue)

    items = world.http.get("/v1/me/offers", headers=user).json()["items"]
    assert {i["title"]: i["status"] for i in items} == {"Coffee": "expired", "Bun": "active", "Juice": "redeemed"}
    assert {i["code"] for i in items} == set(codes.values())
    assert all(i["venue"] == {"id": venue["id"], "name": "Tapperiet"} for i in items)
    by_title = {i["title"]: i for i in items}
    assert by_title["Juice"]["redeemed_at"] is not None and by_title["Bun"]["redeemed_at"] is None
    stored = db.execute("SELECT code, expires_at FROM unlocks WHERE user_id = %s", (sub,)).fetchall()
    assert {r["code"]: r["expires_at"] for r in stored} == {
        i["code"]: datetime.fromisoformat(i["expires_at"]) for i in items
    }
    assert Counter(i["status"] for i in world.http.get("/v1/me/offers", headers=stranger).json()["items"]) == {
        "active": 3
    }
    assert world.http.get("/v1/me/offers", headers=m.admin).status_code == 403
