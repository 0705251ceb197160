"""Campaigns and offers over HTTP: creation and validation, the status transitions, tenant
scoping, and the measurement settings frozen once a campaign has been active (in the API
and by the database trigger)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.factories import offer_body


def campaign_body(venues: list[str], **overrides) -> dict:
    now = datetime.now(UTC)
    return {
        "name": "Spring",
        "venue_ids": venues,
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(days=30)).isoformat(),
        **overrides,
    }


def create(world, merchant, venues: list[str], **overrides):
    return world.http.post("/v1/campaigns", json=campaign_body(venues, **overrides), headers=merchant.admin)


def fields_of(response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


def test_create_is_a_draft_with_measurement_defaults(world):
    m = world.merchant()
    venues = [world.venue(m)["id"], world.venue(m)["id"]]
    r = create(world, m, venues + venues[:1])  # a repeated venue counts once
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["holdout_percent"], body["attribution_days"]) == ("draft", 10, 14)
    assert body["merchant_id"] == m.id and body["activated_at"] is None and body["offers"] == []
    assert sorted(body["venue_ids"]) == sorted(venues)
    assert world.http.get(f"/v1/campaigns/{body['id']}", headers=m.admin).json() == body


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"holdout_percent": 51}, "holdout_percent"),
        ({"holdout_percent": -1}, "holdout_percent"),
        ({"attribution_days": 0}, "attribution_days"),
        ({"attribution_days": 91}, "attribution_days"),
        ({"venue_ids": []}, "venue_ids"),
        ({"name": ""}, "name"),
        ({"name": "Spring\u0000"}, "name"),  # PostgreSQL text cannot hold NUL
        ({"starts_at": "2026-05-01T10:00:00"}, "starts_at"),  # no time zone
        ({"status": "active"}, "status"),
        ({"merchant_id": str(uuid.uuid4())}, "merchant_id"),
    ],
)
def test_invalid_campaigns_are_422(world, overrides, field):
    m = world.merchant()
    r = create(world, m, [world.venue(m)["id"]], **overrides)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error" and field in fields_of(r)


def test_bounds_of_holdout_and_attribution_are_accepted(world):
    m = world.merchant()
    venue = world.venue(m)["id"]
    for holdout, days in ((0, 1), (50, 90)):
        r = create(world, m, [venue], holdout_percent=holdout, attribution_days=days)
        assert r.status_code == 201, r.text
        assert (r.json()["holdout_percent"], r.json()["attribution_days"]) == (holdout, days)


def test_ends_before_it_starts_is_422(world):
    m = world.merchant()
    now = datetime.now(UTC)
    r = create(world, m, [world.venue(m)["id"]], ends_at=(now - timedelta(hours=1)).isoformat())
    assert r.status_code == 422 and fields_of(r) == ["ends_at"]


def test_venues_must_be_the_callers_own(world):
    mine, theirs = world.merchant(), world.merchant("Other")
    r = create(world, mine, [world.venue(mine)["id"], world.venue(theirs)["id"]])
    assert r.status_code == 422, r.text
    assert fields_of(r) == ["venue_ids"] and r.json()["errors"][0]["code"] == "unknown_venue"
    deleted = world.venue(mine)
    assert world.http.delete(f"/v1/venues/{deleted['id']}", headers=mine.admin).status_code == 204
    assert create(world, mine, [deleted["id"]]).status_code == 422
    assert create(world, mine, [str(uuid.uuid4())]).status_code == 422


def test_only_merchant_admins_create_and_change(world):
    m = world.merchant()
    venue = world.venue(m)["id"]
    for headers in (m.staff, m.marketer, world.user()):
        r = world.http.post("/v1/campaigns", json=campaign_body([venue]), headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    campaign = world.campaign(m, [venue], activate=False)
    for headers in (m.staff, m.marketer):
        assert world.http.get(f"/v1/campaigns/{campaign['id']}", headers=headers).status_code == 200
        assert world.http.post(f"/v1/campaigns/{campaign['id']}/activate", headers=headers).status_code == 403
    assert world.http.get(f"/v1/campaigns/{campaign['id']}", headers=world.user()).status_code == 403


# Offers


def test_an_offer_is_created_with_its_rule_and_budget(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], [], activate=False)
    offer = offer_body(
        rule={"type": "nth_checkin", "n": 5},
        per_user_limit=2,
        total_limit=50,
        redeem_within_minutes=30,
        schedule={"weekdays": [5, 1], "windows": [{"start": "22:00", "end": "02:00"}]},
    )
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/offers", json=offer, headers=m.admin)
    assert r.status_code == 201, r.text
    body = r.json()
    uuid.UUID(body["id"])
    assert body["rule"] == {"type": "nth_checkin", "n": 5} and body["remaining"] == 50
    assert body["schedule"] == {"weekdays": [1, 5], "windows": [{"start": "22:00", "end": "02:00"}]}
    assert (body["per_user_limit"], body["total_limit"], body["redeem_within_minutes"]) == (2, 50, 30)
    got = world.http.get(f"/v1/campaigns/{campaign['id']}", headers=m.admin).json()
    assert [o["id"] for o in got["offers"]] == [body["id"]]


def test_a_flash_offers_budget_is_its_first_n(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], [], activate=False)
    r = world.http.post(
        f"/v1/campaigns/{campaign['id']}/offers",
        headers=m.admin,
        json=offer_body(rule={"type": "flash", "first_n": 7}, total_limit=1000),
    )
    assert r.status_code == 201 and r.json()["remaining"] == 7


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rule": None}, "rule"),
        ({"rule": {"type": "any_visit"}}, "rule"),
        ({"rule": {"type": "nth_checkin"}}, "rule.nth_checkin.n"),
        ({"rule": {"type": "nth_checkin", "n": 1}}, "rule.nth_checkin.n"),
        ({"rule": {"type": "group", "min_people": 1, "within_minutes": 10}}, "rule.group.min_people"),
        ({"rule": {"type": "every_checkin", "n": 2}}, "rule.every_checkin.n"),
        ({"title": "Free\u0000bun"}, "title"),
        ({"terms": "\u0000"}, "terms"),
        ({"total_limit": 0}, "total_limit"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"redeem_within_minutes": 0}, "redeem_within_minutes"),
        ({"schedule": {"windows": [{"start": "10:00", "end": "10:00"}]}}, "schedule.windows.0"),
        ({"schedule": {"weekdays": [0]}}, "schedule.weekdays.0"),
        ({"schedule": {"weekdays": [1, 1]}}, "schedule.weekdays"),
        ({"schedule": {"windows": [{"start": "25:00", "end": "10:00"}]}}, "schedule.windows.0.start"),
        ({"schedule": {"windows": [{"start": "09:00:30", "end": "10:00"}]}}, "schedule.windows.0.start"),
        ({"schedule": {"windows": [{"start": "09:00", "end": "10:00+02:00"}]}}, "schedule.windows.0.end"),
    ],
)
def test_invalid_offers_are_422_and_an_offer_needs_a_rule(world, db, change, field):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], [], activate=False)
    body = {k: v for k, v in (offer_body() | change).items() if v is not None}
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/offers", json=body, headers=m.admin)
    assert r.status_code == 422, r.text
    assert field in fields_of(r), fields_of(r)
    assert db.execute("SELECT count(*) AS n FROM offers WHERE campaign_id = %s", (campaign["id"],)).fetchone()["n"] == 0


def test_the_database_refuses_an_offer_without_a_rule(world, db):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], [], activate=False)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO offers (campaign_id, title, description, terms, rule, per_user_limit, total_limit, "
            "redeem_within_minutes) VALUES (%s, 't', 'd', 't', '{}', 1, 1, 1)",
            (campaign["id"],),
        )


def test_offers_of_another_merchants_campaign_are_404(world):
    m, other = world.merchant(), world.merchant("Other")
    campaign = world.campaign(m, [world.venue(m)["id"]], activate=False)
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/offers", json=offer_body(), headers=other.admin)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


# Transitions


def test_the_status_transitions(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], activate=False)

    def act(action: str, expected: int, status: str | None = None):
        r = world.http.post(f"/v1/campaigns/{campaign['id']}/{action}", headers=m.admin)
        assert r.status_code == expected, (action, r.text)
        if expected == 409:
            assert r.json()["code"] == "invalid_transition"
        else:
            assert r.json()["status"] == status
        return r.json()

    act("pause", 409)
    activated = act("activate", 200, "active")
    assert activated["activated_at"] is not None
    act("activate", 409)
    act("pause", 200, "paused")
    act("pause", 409)
    again = act("activate", 200, "active")
    assert again["activated_at"] == activated["activated_at"]  # the first activation is kept
    act("end", 200, "ended")
    for action in ("activate", "pause", "end"):
        act(action, 409)
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/offers", json=offer_body(), headers=m.admin)
    assert (r.status_code, r.json()["code"]) == (409, "campaign_ended")


def test_a_draft_can_end_and_an_empty_or_expired_campaign_cannot_start(world, db):
    m = world.merchant()
    venue = world.venue(m)["id"]
    draft = world.campaign(m, [venue], activate=False)
    assert world.http.post(f"/v1/campaigns/{draft['id']}/end", headers=m.admin).json()["status"] == "ended"

    empty = world.campaign(m, [venue], [], activate=False)
    r = world.http.post(f"/v1/campaigns/{empty['id']}/activate", headers=m.admin)
    assert (r.status_code, r.json()["code"]) == (409, "no_offers")

    over = world.campaign(m, [venue], activate=False)
    db.execute(
        "UPDATE campaigns SET starts_at = now() - interval '2 days', ends_at = now() - interval '1 day' WHERE id = %s",
        (over["id"],),
    )  # test data: a campaign whose time has passed
    r = world.http.post(f"/v1/campaigns/{over['id']}/activate", headers=m.admin)
    assert (r.status_code, r.json()["code"]) == (409, "campaign_over")


def test_transitions_of_unknown_or_other_merchants_campaigns_are_404(world):
    m, other = world.merchant(), world.merchant("Other")
    campaign = world.campaign(m, [world.venue(m)["id"]], activate=False)
    for action in ("activate", "pause", "end"):
        assert world.http.post(f"/v1/campaigns/{campaign['id']}/{action}", headers=other.admin).status_code == 404
        assert world.http.post(f"/v1/campaigns/{uuid.uuid4()}/{action}", headers=m.admin).status_code == 404
    assert world.http.get(f"/v1/campaigns/{campaign['id']}", headers=m.admin).json()["status"] == "draft"


# Reading


def test_get_and_list_are_scoped_to_the_merchant(world):
    m, other = world.merchant(), world.merchant("Other")
    venue = world.venue(m)["id"]
    mine = {world.campaign(m, [venue], activate=False)["id"] for _ in range(3)}
    theirs = world.campaign(other, [world.venue(other)["id"]], activate=False)

    assert world.http.get(f"/v1/campaigns/{theirs['id']}", headers=m.admin).status_code == 404
    assert world.http.get(f"/v1/campaigns/{uuid.uuid4()}", headers=m.admin).status_code == 404
    listed, cursor = [], None
    while True:  # two per page: the cursor walks all of them
        page = world.http.get(
            "/v1/campaigns", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=m.staff
        ).json()
        listed += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(listed) == sorted(mine)
    assert [c["id"] for c in world.http.get("/v1/campaigns", headers=other.marketer).json()["items"]] == [theirs["id"]]


def test_a_page_of_campaigns_reads_every_budget_in_one_query(world, db, base_url):
    """One query for the budgets of the whole page, not one per campaign; each offer still gets its own."""
    from sqlalchemy import event

    from core.db import get_engine

    m = world.merchant()
    venue = world.venue(m)["id"]
    limits = {}
    for total in (3, 5, 7):
        campaign = world.campaign(m, [venue], [offer_body(total_limit=total), offer_body(total_limit=total + 1)])
        limits.update({o["id"]: o["total_limit"] for o in campaign["offers"]})
    spent = next(iter(limits))
    db.execute("UPDATE offer_budget_shards SET remaining = 0 WHERE offer_id = %s", (spent,))
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    engine = get_engine().sync_engine  # the live server's, in this process
    event.listen(engine, "before_cursor_execute", record)
    try:
        page = world.http.get("/v1/campaigns", params={"limit": 3}, headers=m.staff).json()
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(page["items"]) == 3
    assert sum("offer_budget_shards" in s for s in statements) == 1, statements
    remaining = {o["id"]: o["remaining"] for c in page["items"] for o in c["offers"]}
    assert remaining == {offer: 0 if offer == spent else total for offer, total in limits.items()}


# Changing a campaign


def test_a_draft_can_change_anything(world):
    m = world.merchant()
    a, b, c = (world.venue(m)["id"] for _ in range(3))
    campaign = world.campaign(m, [a, b], activate=False)
    r = world.http.patch(
        f"/v1/campaigns/{campaign['id']}",
        headers=m.admin,
        json={"holdout_percent": 25, "attribution_days": 30, "venue_ids": [b, c], "name": "Renamed"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["holdout_percent"], body["attribution_days"], body["name"]) == (25, 30, "Renamed")
    assert sorted(body["venue_ids"]) == sorted([b, c])


def test_once_active_the_measurement_settings_are_frozen(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], holdout_percent=10)
    for change in ({"holdout_percent": 20}, {"attribution_days": 7}, {"holdout_percent": 10, "name": "x"}):
        r = world.http.patch(f"/v1/campaigns/{campaign['id']}", json=change, headers=m.admin)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "measurement_frozen"
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/pause", headers=m.admin).status_code == 200
    r = world.http.patch(f"/v1/campaigns/{campaign['id']}", json={"holdout_percent": 20}, headers=m.admin)
    assert (r.status_code, r.json()["code"]) == (409, "measurement_frozen")  # still frozen while paused

    r = world.http.patch(f"/v1/campaigns/{campaign['id']}", json={"name": "Renamed"}, headers=m.admin)
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    got = world.http.get(f"/v1/campaigns/{campaign['id']}", headers=m.admin).json()
    assert (got["holdout_percent"], got["attribution_days"]) == (10, 14)


def test_patch_validation(world):
    m, other = world.merchant(), world.merchant("Other")
    campaign = world.campaign(m, [world.venue(m)["id"]], activate=False)
    url = f"/v1/campaigns/{campaign['id']}"
    for change, field in (
        ({"holdout_percent": None}, "holdout_percent"),
        ({"holdout_percent": 60}, "holdout_percent"),
        ({"venue_ids": [world.venue(other)["id"]]}, "venue_ids"),
        ({"status": "active"}, "status"),
    ):
        r = world.http.patch(url, json=change, headers=m.admin)
        assert r.status_code == 422 and field in fields_of(r), r.text
    assert world.http.patch(url, json={"name": "x"}, headers=other.admin).status_code == 404
    assert world.http.post(f"{url}/end", headers=m.admin).status_code == 200
    r = world.http.patch(url, json={"name": "x"}, headers=m.admin)
    assert (r.status_code, r.json()["code"]) == (409, "campaign_ended")


def test_the_trigger_freezes_measurement_even_for_a_direct_update(world, db):
    m = world.merchant()
    venue = world.venue(m)["id"]
    draft = world.campaign(m, [venue], activate=False)
    db.execute("UPDATE campaigns SET assignment_salt = 'resalted', holdout_percent = 30 WHERE id = %s", (draft["id"],))

    active = world.campaign(m, [venue])
    for assignment in ("assignment_salt = 'resalted'", "holdout_percent = 30", "attribution_days = 3"):
        with pytest.raises(psycopg.errors.CheckViolation, match="frozen"):
            db.execute(f"UPDATE campaigns SET {assignment} WHERE id = %s", (active["id"],))
    db.execute("UPDATE campaigns SET name = 'fine' WHERE id = %s", (active["id"],))


# Offers: read, change, pause and retire


def offer_of(world, m, campaign: dict, index: int = 0) -> dict:
    return world.http.get(f"/v1/offers/{campaign['offers'][index]['id']}", headers=m.admin).json()


def patch_offer(world, m, offer_id: str, change: dict):
    return world.http.patch(f"/v1/offers/{offer_id}", json=change, headers=m.admin)


def unlocked_titles(world, venue: dict) -> list[str]:
    """What a new user's check-in at the venue unlocks (a new user: no cool-down, no history)."""
    r = world.checkin(world.user(), *venue["center"])
    assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
    return sorted(u["title"] for u in r.json()["unlocked"])


def test_offers_are_listed_and_read_with_status_and_budget_by_the_merchant_only(world):
    m, other = world.merchant(), world.merchant("Other")
    bodies = [offer_body(title=f"Offer {i}", total_limit=10 + i) for i in range(3)]
    bodies.append(offer_body(title="Flash", rule={"type": "flash", "first_n": 4}, total_limit=100))
    campaign = world.campaign(m, [world.venue(m)["id"]], bodies, activate=False)
    url = f"/v1/campaigns/{campaign['id']}/offers"

    listed, cursor = [], None
    while True:  # one per page: the cursor walks them in the order they were added
        page = world.http.get(url, params={"limit": 1, **({"cursor": cursor} if cursor else {})}, headers=m.marketer)
        assert page.status_code == 200, page.text
        listed += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [o["title"] for o in listed] == ["Offer 0", "Offer 1", "Offer 2", "Flash"]
    assert [(o["status"], o["budget"], o["remaining"]) for o in listed] == [
        ("active", 10, 10),
        ("active", 11, 11),
        ("active", 12, 12),
        ("active", 4, 4),  # a flash offer's budget is its first N
    ]
    assert listed == [o | {"remaining": o["remaining"]} for o in campaign["offers"]]
    for headers in (m.admin, m.staff, m.marketer):
        assert world.http.get(f"/v1/offers/{listed[0]['id']}", headers=headers).json() == listed[0]

    assert world.http.get(url, headers=other.admin).status_code == 404
    assert world.http.get(f"/v1/campaigns/{uuid.uuid4()}/offers", headers=m.admin).status_code == 404
    assert world.http.get(f"/v1/offers/{listed[0]['id']}", headers=other.marketer).status_code == 404
    assert patch_offer(world, other, listed[0]["id"], {"title": "Mine now"}).status_code == 404
    assert world.http.get(f"/v1/offers/{listed[0]['id']}", headers=world.user()).status_code == 403
    for headers in (m.staff, m.marketer):
        r = world.http.patch(f"/v1/offers/{listed[0]['id']}", json={"status": "paused"}, headers=headers)
        assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")
    r = world.http.get(url, params={"cursor": "not-a-cursor"}, headers=m.admin)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (422, "invalid_cursor")


def test_a_draft_offer_can_change_anything_and_its_budget_is_laid_out_again(world, db):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], [offer_body(total_limit=100)], activate=False)
    offer_id = campaign["offers"][0]["id"]
    change = {
        "title": "Two for one",
        "description": "Any pastry",
        "terms": "Weekdays only",
        "rule": {"type": "flash", "first_n": 5},
        "schedule": {"weekdays": [5, 1], "windows": [{"start": "15:00", "end": "17:00"}]},
        "per_user_limit": 1,
        "redeem_within_minutes": 15,
    }
    r = patch_offer(world, m, offer_id, change)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in change} == change | {
        "schedule": {"weekdays": [1, 5], "windows": [{"start": "15:00", "end": "17:00"}]}
    }
    assert (body["budget"], body["remaining"]) == (5, 5)
    r = patch_offer(world, m, offer_id, {"rule": {"type": "every_checkin"}, "total_limit": 3, "schedule": None})
    assert (r.json()["budget"], r.json()["remaining"], r.json()["schedule"]) == (3, 3, None)
    shards = db.execute("SELECT shard, remaining FROM offer_budget_shards WHERE offer_id = %s ORDER BY 1", (offer_id,))
    assert [(s["shard"], s["remaining"]) for s in shards] == [(0, 1), (1, 1), (2, 1)]  # laid out afresh


def test_once_active_what_is_measured_is_frozen_and_the_budget_only_grows(world, db):
    m = world.merchant()
    venue = world.venue(m)
    offer = offer_body(rule={"type": "every_checkin"}, per_user_limit=2, total_limit=10, redeem_within_minutes=60)
    campaign = world.campaign(m, [venue["id"]], [offer])
    offer_id = campaign["offers"][0]["id"]
    assert unlocked_titles(world, venue) == [offer["title"]]

    for change, frozen in (
        ({"rule": {"type": "nth_checkin", "n": 2}}, "rule"),
        ({"per_user_limit": 3}, "per_user_limit"),
        ({"redeem_within_minutes": 30}, "redeem_within_minutes"),
        ({"per_user_limit": 1, "title": "x"}, "per_user_limit"),
    ):
        r = patch_offer(world, m, offer_id, change)
        assert (r.status_code, r.json()["code"]) == (409, "measurement_frozen"), r.text
        assert frozen in r.json()["detail"]
    r = patch_offer(world, m, offer_id, {"total_limit": 9})
    assert (r.status_code, r.json()["code"]) == (409, "budget_cannot_shrink")
    assert offer_of(world, m, campaign)["title"] == offer["title"]  # a refused change changes nothing

    # The same values again are no change, so a form may send them all; texts and schedule change.
    same = {"rule": offer["rule"], "per_user_limit": 2, "redeem_within_minutes": 60, "total_limit": 10}
    r = patch_offer(world, m, offer_id, same | {"title": "Renamed", "schedule": {"weekdays": [1, 2, 3, 4, 5, 6, 7]}})
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["budget"], r.json()["remaining"]) == ("Renamed", 10, 9)

    r = patch_offer(world, m, offer_id, {"total_limit": 25})  # one unlock spent: 15 more, 24 left
    assert (r.status_code, r.json()["budget"], r.json()["remaining"]) == (200, 25, 24), r.text
    shards = db.execute("SELECT count(*) AS n FROM offer_budget_shards WHERE offer_id = %s", (offer_id,)).fetchone()
    assert shards["n"] == 8  # a grown budget is spread like a new one
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/pause", headers=m.admin).status_code == 200
    r = patch_offer(world, m, offer_id, {"per_user_limit": 5})  # still frozen while the campaign is paused
    assert (r.status_code, r.json()["code"]) == (409, "measurement_frozen")


def test_a_paused_or_retired_offer_unlocks_nothing(world, db):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(title="Bun"), offer_body(title="Coffee")])
    bun = campaign["offers"][0]["id"]
    assert unlocked_titles(world, venue) == ["Bun", "Coffee"]

    r = patch_offer(world, m, bun, {"status": "paused"})
    assert (r.status_code, r.json()["status"]) == (200, "paused")
    assert unlocked_titles(world, venue) == ["Coffee"]
    assert patch_offer(world, m, bun, {"status": "active"}).json()["status"] == "active"
    assert unlocked_titles(world, venue) == ["Bun", "Coffee"]

    assert patch_offer(world, m, bun, {"status": "retired"}).json()["status"] == "retired"
    assert unlocked_titles(world, venue) == ["Coffee"]
    for change in ({"status": "active"}, {"status": "paused"}, {"total_limit": 5000}, {"schedule": {"weekdays": [1]}}):
        r = patch_offer(world, m, bun, change)
        assert (r.status_code, r.json()["code"]) == (409, "offer_retired"), (change, r.text)
    assert patch_offer(world, m, bun, {"status": "retired"}).status_code == 200  # no change
    r = patch_offer(world, m, bun, {"terms": "Codes already given out are honoured"})  # wallets still show them
    assert (r.status_code, r.json()["status"]) == (200, "retired")
    status = db.execute("SELECT status FROM offers WHERE id = %s", (bun,)).fetchone()["status"]
    assert status == "retired"


def test_a_campaign_whose_offers_are_all_retired_cannot_be_activated(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], activate=False)
    patch_offer(world, m, campaign["offers"][0]["id"], {"status": "retired"})
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/activate", headers=m.admin)
    assert (r.status_code, r.json()["code"]) == (409, "no_offers")


def test_offer_patch_validation(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]], activate=False)
    offer_id = campaign["offers"][0]["id"]
    for change, field, code in (
        ({"title": None}, "title", "null_not_allowed"),
        ({"rule": None}, "rule", "null_not_allowed"),
        ({"title": ""}, "title", "too_short"),
        ({"status": "deleted"}, "status", "literal_error"),
        ({"rule": {"type": "nth_checkin", "n": 1}}, "rule.nth_checkin.n", "greater_than_equal"),
        ({"total_limit": 0}, "total_limit", "greater_than_equal"),
        ({"schedule": {"weekdays": []}}, "schedule.weekdays", "too_short"),
        ({"campaign_id": str(uuid.uuid4())}, "campaign_id", "extra_forbidden"),
        ({"remaining": 1_000_000}, "remaining", "extra_forbidden"),
    ):
        r = patch_offer(world, m, offer_id, change)
        assert r.status_code == 422, (change, r.text)
        assert {"field": field, "code": code} in [{k: e[k] for k in ("field", "code")} for e in r.json()["errors"]]
    assert offer_of(world, m, campaign) == campaign["offers"][0]
    assert patch_offer(world, m, str(uuid.uuid4()), {"title": "x"}).status_code == 404


def test_an_ended_campaigns_offers_do_not_change(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]])
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/end", headers=m.admin).status_code == 200
    r = patch_offer(world, m, campaign["offers"][0]["id"], {"status": "paused"})
    assert (r.status_code, r.json()["code"]) == (409, "campaign_ended")


# Deleting a draft


def test_only_a_draft_is_deleted_and_with_it_its_offers(world, db):
    m, other = world.merchant(), world.merchant("Other")
    venue = world.venue(m)["id"]
    draft = world.campaign(m, [venue], [offer_body(), offer_body()], activate=False)
    url = f"/v1/campaigns/{draft['id']}"
    for headers in (m.marketer, m.staff):
        assert world.http.delete(url, headers=headers).status_code == 403
    assert world.http.delete(url, headers=other.admin).status_code == 404

    r = world.http.delete(url, headers=m.admin)
    assert r.status_code == 204 and r.content == b""
    assert world.http.get(url, headers=m.admin).status_code == 404
    assert world.http.get(f"/v1/offers/{draft['offers'][0]['id']}", headers=m.admin).status_code == 404
    offers = [o["id"] for o in draft["offers"]]
    left = db.execute(
        "SELECT (SELECT count(*) FROM offers WHERE id = ANY(%(o)s)) + (SELECT count(*) FROM offer_budget_shards"
        " WHERE offer_id = ANY(%(o)s)) + (SELECT count(*) FROM campaign_venues WHERE campaign_id = %(c)s) AS n",
        {"o": offers, "c": draft["id"]},
    ).fetchone()["n"]
    assert left == 0
    assert world.http.delete(url, headers=m.admin).status_code == 404

    active = world.campaign(m, [venue])
    ended = world.campaign(m, [venue])
    world.http.post(f"/v1/campaigns/{ended['id']}/end", headers=m.admin)
    for campaign, status in ((active, "active"), (ended, "ended")):
        r = world.http.delete(f"/v1/campaigns/{campaign['id']}", headers=m.admin)
        assert (r.status_code, r.json()["code"]) == (409, "campaign_not_draft")
        assert world.http.get(f"/v1/campaigns/{campaign['id']}", headers=m.admin).json()["status"] == status
