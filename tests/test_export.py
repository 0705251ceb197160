"""A customer's export (GET /v1/me/export): everything the service holds about the caller, and
nothing about anyone else: check-ins with their positions (null after retention), unlocks with
their codes' states, redemptions, feedback, conversations with their messages, and the arm of
every campaign that counted them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import Merchant, World, near, offer_body
from tests.test_errors_and_limits import assert_problem


@dataclass
class Story:
    """One customer's doings at two merchants, as tests/test_merchant_pseudonyms.py reads them too."""

    sub: str
    user: dict[str, str]
    shop: Merchant  # the merchant with most of the story
    other: Merchant  # a second merchant the customer also visited
    venues: list[dict]  # the shop's two venues, then the other's
    campaigns: list[dict]  # the shop's, the other's
    checkins: list[dict] = field(default_factory=list)  # what POST /v1/checkins answered, in order
    fixes: list[tuple[float, float]] = field(default_factory=list)  # the positions sent, in order
    redeemed: dict = field(default_factory=dict)  # the unlock redeemed (and rated, and talked about)
    expired: dict = field(default_factory=dict)  # an unlock let expire
    voided: dict = field(default_factory=dict)  # an unlock redeemed by mistake, and the redemption voided
    conversation: dict = field(default_factory=dict)  # the merchant's view of it

    def unlocks(self) -> list[dict]:
        return [u for c in self.checkins for u in c["unlocked"]]


def distinctive_sub() -> str:
    return f"Zq9-customer-{uuid.uuid4().hex}@idp.example"


def customer_story(world: World, db, sub: str | None = None, shop: Merchant | None = None) -> Story:
    """A customer checks in (accepted and rejected), unlocks two offers at each visit, redeems one,
    rates it with a comment, gets an answer, writes again, and visits a second merchant."""
    sub = sub or distinctive_sub()
    shop, other = shop or world.merchant("Bakeriet"), world.merchant("Kaffebaren")
    first = world.venue(shop, radius_m=50, name="Harbour kiosk")
    second = world.venue(shop, center=near(first["center"], 300, 0), radius_m=50, name="Station kiosk")
    theirs = world.venue(other, center=near(first["center"], -600, 0), radius_m=50, name="Kaffebaren")
    two_offers = [offer_body(), offer_body(title="Free refill")]
    campaigns = [
        world.campaign(shop, [first["id"], second["id"]], two_offers),
        world.campaign(other, [theirs["id"]], holdout_percent=50),
    ]
    story = Story(sub, world.user(sub), shop, other, [first, second, theirs], campaigns)
    now = datetime.now(UTC)
    # Back-dated within the fix age, slow enough between venues for the speed check.
    visits = [
        (near(first["center"], 12, -9), now - timedelta(minutes=8), ("accepted", None)),
        (near(first["center"], -14, 21), now - timedelta(minutes=7), ("rejected", "too_frequent")),
        (near(first["center"], 33, 230), now - timedelta(minutes=6), ("rejected", "outside_geofence")),
        (near(second["center"], -17, 8), now - timedelta(minutes=4), ("accepted", None)),
        (near(theirs["center"], 9, 13), now, ("accepted", None)),
    ]
    for fix, observed_at, expected in visits:
        r = world.checkin(story.user, *fix, observed_at=observed_at, accuracy_m=20, device_id="pixel-of-zq9")
        assert r.status_code == 201, r.text
        assert (r.json()["status"], r.json()["reason"]) == expected, r.text
        story.checkins.append(r.json())
        story.fixes.append(fix)

    story.redeemed, story.expired = story.checkins[0]["unlocked"]
    r = world.http.post(
        "/v1/redemptions", json={"code": story.redeemed["code"], "venue_id": first["id"]}, headers=shop.staff
    )
    assert r.status_code == 201, r.text
    db.execute("UPDATE unlocks SET expires_at = unlocked_at WHERE id = %s", (story.expired["unlock_id"],))
    # A till mistake: redeemed at the second venue, then voided (its code is active again).
    story.voided = story.checkins[3]["unlocked"][0]
    r = world.http.post(
        "/v1/redemptions", json={"code": story.voided["code"], "venue_id": second["id"]}, headers=shop.staff
    )
    assert r.status_code == 201, r.text
    r = world.http.post(f"/v1/redemptions/{r.json()['id']}/void", json={"reason": "wrong code"}, headers=shop.admin)
    assert r.status_code == 200, r.text
    feedback = {"rating": 6, "comment": "Lovely bun, slow queue"}
    r = world.http.post(f"/v1/unlocks/{story.redeemed['unlock_id']}/feedback", json=feedback, headers=story.user)
    assert r.status_code == 201, r.text
    conversation_id = r.json()["conversation_id"]
    r = world.http.post(
        f"/v1/conversations/{conversation_id}/messages", json={"body": "Sorry, we add a till"}, headers=shop.staff
    )
    assert r.status_code == 201, r.text
    r = world.http.post(
        f"/v1/unlocks/{story.redeemed['unlock_id']}/messages", json={"body": "Thanks!"}, headers=story.user
    )
    assert r.status_code == 201, r.text
    r = world.http.get(f"/v1/conversations/{conversation_id}", headers=shop.admin)
    assert r.status_code == 200, r.text
    story.conversation = r.json()
    return story


def export_of(world: World, user: dict[str, str]) -> dict:
    r = world.http.get("/v1/me/export", headers=user)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def test_the_export_holds_everything_the_customer_did(world, db):
    story = customer_story(world, db)
    world.checkin(world.user(), *story.venues[0]["center"])  # someone else: not in this export

    export = export_of(world, story.user)

    assert export["subject"] == story.sub
    checkins = export["checkins"]
    assert checkins["total"] == 5 and checkins["next_cursor"] is None
    by_id = {c["id"]: c for c in checkins["items"]}
    assert list(by_id) == [c["id"] for c in reversed(story.checkins)]  # newest first
    for sent, fix in zip(story.checkins, story.fixes, strict=True):
        held = by_id[sent["id"]]
        assert (held["status"], held["reason"]) == (sent["status"], sent["reason"])
        assert (held["lon"], held["lat"]) == pytest.approx(fix, abs=1e-9)  # the position as sent
        assert held["accuracy_m"] == 20 and held["device_id"] == "pixel-of-zq9"
        assert held["venue"]["id"] == sent["venue"]["id"]
    assert by_id[story.checkins[2]["id"]]["detail"]["distance_m"] > 100

    unlocks = {u["id"]: u for u in export["unlocks"]}
    assert set(unlocks) == {u["unlock_id"] for u in story.unlocks()}
    assert unlocks[story.redeemed["unlock_id"]]["state"] == "redeemed"
    assert unlocks[story.expired["unlock_id"]]["state"] == "expired"
    assert {u["state"] for u in unlocks.values()} == {"redeemed", "expired", "active"}
    for unlocked in story.unlocks():
        assert unlocks[unlocked["unlock_id"]]["code"] == unlocked["code"]
        assert unlocks[unlocked["unlock_id"]]["offer"]["title"] == unlocked["title"]

    voided, redemption = export["redemptions"]  # newest first
    assert redemption["unlock_id"] == story.redeemed["unlock_id"] and redemption["voided_at"] is None
    assert voided["unlock_id"] == story.voided["unlock_id"] and voided["void_reason"] == "wrong code"
    assert voided["voided_at"] is not None and unlocks[story.voided["unlock_id"]]["state"] == "active"
    assert "staff" not in redemption and "staff_sub" not in redemption
    (feedback,) = export["feedback"]
    assert (feedback["unlock_id"], feedback["rating"], feedback["comment"]) == (
        story.redeemed["unlock_id"],
        6,
        "Lovely bun, slow queue",
    )
    (conversation,) = export["conversations"]
    assert conversation["id"] == story.conversation["id"]
    assert [(m["author"], m["body"]) for m in conversation["messages"]] == [
        ("customer", "Lovely bun, slow queue"),
        ("merchant", "Sorry, we add a till"),
        ("customer", "Thanks!"),
    ]
    assert "staff" not in conversation["messages"][1]  # which staff member answered is not the customer's

    arms = {e["campaign"]["id"]: e["arm"] for e in export["campaigns"]}
    held_arms = db.execute("SELECT campaign_id::text, arm FROM exposures WHERE user_id = %s", (story.sub,)).fetchall()
    assert arms == {row["campaign_id"]: row["arm"] for row in held_arms}
    assert set(arms) == {c["id"] for c in story.campaigns}
    assert arms[story.campaigns[0]["id"]] == "treatment"  # no holdout there
    (at_shop,) = [e for e in export["campaigns"] if e["campaign"]["id"] == story.campaigns[0]["id"]]
    assert at_shop["checkin_id"] == story.checkins[0]["id"] and at_shop["triggered_at"] is not None
    assert at_shop["return_visits"] == 1  # the visit to the second venue


def test_an_export_of_nobody_in_particular_is_empty_and_merchants_cannot_ask(world):
    export = export_of(world, world.user())
    assert export["checkins"] == {"items": [], "next_cursor": None, "total": 0}
    assert all(export[part] == [] for part in ("unlocks", "redemptions", "feedback", "conversations", "campaigns"))

    merchant = world.merchant()
    assert_problem(world.http.get("/v1/me/export", headers=merchant.admin), 403)
    assert_problem(world.http.get("/v1/me/export"), 401)
    assert_problem(world.http.get("/v1/me/export/checkins", params={"cursor": "nonsense"}, headers=world.user()), 422)


def test_positions_removed_by_retention_export_as_null(world, db):
    from offers.privacy.retention import FORGET_POSITION

    merchant = world.merchant()
    venue = world.venue(merchant, radius_m=50)
    user = world.user()
    r = world.checkin(user, *near(venue["center"], 80, 0), device_id="old-phone")  # 30 m outside
    assert r.json()["reason"] == "outside_geofence", r.text
    db.execute(f"UPDATE checkins c SET {FORGET_POSITION} WHERE c.id = %s", (r.json()["id"],))  # what the purge does

    (held,) = export_of(world, user)["checkins"]["items"]
    assert (held["lon"], held["lat"], held["accuracy_m"], held["device_id"]) == (None, None, None, None)
    assert held["status"] == "rejected" and held["venue"]["id"] == venue["id"]
    assert held["accuracy_bucket"] and held["distance_to_fence_m"] == 30
    review = world.http.get("/v1/checkins", params={"venue_id": venue["id"]}, headers=merchant.admin).json()
    assert review["items"][0]["distance_to_fence_m"] == 30  # kept for review: not the 0 of a missing point
    page = world.http.get(f"/dashboard/venues/{venue['id']}", headers=merchant.admin)
    assert page.status_code == 200 and "removed" in page.text


def test_many_checkins_come_a_page_at_a_time(world, monkeypatch):
    from offers.privacy import export

    monkeypatch.setattr(export, "CHECKINS_PER_PAGE", 2)  # the server runs in this process
    merchant = world.merchant()
    venue = world.venue(merchant)
    user = world.user()
    sent = [world.checkin(user, *venue["center"]).json()["id"] for _ in range(5)]  # 1 accepted, 4 too soon

    first = export_of(world, user)["checkins"]
    assert first["total"] == 5 and len(first["items"]) == 2 and first["next_cursor"]
    seen, cursor = [c["id"] for c in first["items"]], first["next_cursor"]
    while cursor:
        r = world.http.get("/v1/me/export/checkins", params={"cursor": cursor, "limit": 2}, headers=user)
        assert r.status_code == 200, r.text
        seen += [c["id"] for c in r.json()["items"]]
        cursor = r.json()["next_cursor"]
    assert sorted(seen) == sorted(sent) and len(seen) == 5
