"""Feedback and conversations over HTTP: a redeemed unlock is rated once by its owner, changed
within the edit window, its comment opens the conversation the merchant answers; a customer writes
at any time within a cap; merchants see only their own conversations and the customer only as a
pseudonym; the inbox puts the longest waiting first; and concurrent requests stay exact."""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from core.pseudonyms import customer_pseudonym, pseudonym
from core.settings import Settings
from tests.factories import Merchant, near, new_user, offer_body
from tests.test_errors_and_limits import assert_problem

GOOD_KEY = "a-pseudonym-key-of-32-bytes-or-more!"


@dataclass
class Shop:
    merchant: Merchant
    venue: dict
    campaign: dict
    venues: list[dict]


@dataclass
class Unlock:
    sub: str
    user: dict[str, str]
    id: str
    code: str


def open_shop(
    world, name: str = "Bakeriet", venues: int = 1, offers: int = 1, center: tuple[float, float] | None = None
) -> Shop:
    merchant = world.merchant(name)
    first = world.venue(merchant, name="Harbour kiosk", center=center)
    others = [
        world.venue(merchant, name=f"Station {i}", center=near(first["center"], 300 * i)) for i in range(1, venues)
    ]
    bodies = [offer_body(title=f"Free cinnamon bun {i}" if i else "Free cinnamon bun") for i in range(offers)]
    campaign = world.campaign(merchant, [v["id"] for v in [first, *others]], bodies)
    return Shop(merchant, first, campaign, [first, *others])


@pytest.fixture
def shop(world) -> Shop:
    return open_shop(world)


def unlock_at(
    world,
    shop: Shop,
    sub_and_user: tuple[str, dict] | None = None,
    venue: dict | None = None,
    observed_at: datetime | None = None,
) -> Unlock:
    """A user really checks in and unlocks the shop's offer."""
    sub, user = sub_and_user or new_user(world)
    r = world.checkin(user, *(venue or shop.venue)["center"], observed_at=observed_at)
    assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
    first = r.json()["unlocked"][0]
    return Unlock(sub, user, first["unlock_id"], first["code"])


def redeem(world, shop: Shop, unlock: Unlock, venue: dict | None = None) -> None:
    body = {"code": unlock.code, "venue_id": (venue or shop.venue)["id"]}
    r = world.http.post("/v1/redemptions", json=body, headers=shop.merchant.staff)
    assert r.status_code == 201, r.text


def redeemed(world, shop: Shop, **kw) -> Unlock:
    unlock = unlock_at(world, shop, **kw)
    redeem(world, shop, unlock)
    return unlock


def give(world, unlock: Unlock, rating: int = 6, comment: str | None = None) -> httpx.Response:
    body = {"rating": rating} | ({"comment": comment} if comment is not None else {})
    return world.http.post(f"/v1/unlocks/{unlock.id}/feedback", json=body, headers=unlock.user)


def write(world, unlock: Unlock, body: str) -> httpx.Response:
    return world.http.post(f"/v1/unlocks/{unlock.id}/messages", json={"body": body}, headers=unlock.user)


def answer(world, headers, conversation_id: str, body: str) -> httpx.Response:
    return world.http.post(f"/v1/conversations/{conversation_id}/messages", json={"body": body}, headers=headers)


def inbox(world, headers, **params) -> dict:
    r = world.http.get("/v1/conversations", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def conversation(world, headers, conversation_id: str) -> dict:
    r = world.http.get(f"/v1/conversations/{conversation_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def mine(world, user) -> list[dict]:
    r = world.http.get("/v1/me/conversations", headers=user)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wallet_item(world, unlock: Unlock) -> dict:
    items = world.http.get("/v1/me/offers", headers=unlock.user).json()["items"]
    return next(item for item in items if item["unlock_id"] == unlock.id)


# --------------------------------------------------------------------------- feedback


def test_a_redeemed_unlock_is_rated_once_and_the_wallet_asks_until_then(world, shop):
    unlock = unlock_at(world, shop)
    assert wallet_item(world, unlock)["feedback_requested"] is False  # not redeemed yet
    assert_problem(give(world, unlock), 409, "not_redeemed")

    redeem(world, shop, unlock)
    assert wallet_item(world, unlock)["feedback_requested"] is True
    r = give(world, unlock, rating=6)

    assert r.status_code == 201, r.text
    body = r.json()
    assert body.keys() >= {"id", "unlock_id", "rating", "comment", "created_at", "conversation_id"}
    assert (body["unlock_id"], body["rating"], body["comment"], body["conversation_id"]) == (unlock.id, 6, None, None)
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["editable_until"]) - created == timedelta(minutes=60)
    assert wallet_item(world, unlock)["feedback_requested"] is False
    assert_problem(give(world, unlock, rating=2), 409, "feedback_exists")
    assert mine(world, unlock.user) == []  # no comment, no conversation


def test_feedback_and_messages_on_another_users_or_a_missing_unlock_are_404(world, shop):
    unlock = redeemed(world, shop)
    stranger = world.user()
    missing = str(uuid.uuid4())
    for unlock_id in (unlock.id, missing):
        for method, path, body in (
            ("POST", "feedback", {"rating": 5}),
            ("PATCH", "feedback", {"rating": 5}),
            ("POST", "messages", {"body": "Is this mine?"}),
        ):
            r = world.http.request(method, f"/v1/unlocks/{unlock_id}/{path}", json=body, headers=stranger)
            assert_problem(r, 404, "not_found")
    assert_problem(world.http.patch(f"/v1/unlocks/{unlock.id}/feedback", json={"rating": 5}, headers=unlock.user), 404)

    conversation_id = write(world, unlock, "Hello").json()["conversation_id"]
    assert_problem(world.http.post(f"/v1/me/conversations/{conversation_id}/read", headers=stranger), 404)
    assert mine(world, stranger) == []


def test_feedback_changes_within_the_window_then_is_locked(world, db, shop):
    unlock = redeemed(world, shop)
    assert give(world, unlock, rating=3).status_code == 201
    url = f"/v1/unlocks/{unlock.id}/feedback"

    r = world.http.patch(url, json={"rating": 4}, headers=unlock.user)
    assert r.status_code == 200, r.text
    assert (r.json()["rating"], r.json()["comment"], r.json()["conversation_id"]) == (4, None, None)
    # A comment added later opens the conversation, with the rating kept.
    r = world.http.patch(url, json={"comment": "Lovely, but a long queue"}, headers=unlock.user)
    assert r.status_code == 200, r.text
    added = r.json()
    assert (added["rating"], added["comment"]) == (4, "Lovely, but a long queue")
    (thread,) = mine(world, unlock.user)
    assert thread["id"] == added["conversation_id"]
    (message,) = thread["messages"]
    assert (message["kind"], message["body"], message["edited_at"]) == ("feedback", "Lovely, but a long queue", None)

    # Rewording changes the same message, marked edited; null is refused.
    r = world.http.patch(url, json={"comment": "  Lovely, and the queue was fine  "}, headers=unlock.user)
    assert r.status_code == 200 and r.json()["comment"] == "Lovely, and the queue was fine", r.text
    (thread,) = mine(world, unlock.user)
    (edited,) = thread["messages"]
    assert edited["id"] == message["id"] and edited["body"] == "Lovely, and the queue was fine"
    assert edited["edited_at"] is not None
    for body in ({"comment": None}, {"rating": None}, {"rating": 8}, {"rating": 0}, {"comment": "   "}):
        assert_problem(world.http.patch(url, json=body, headers=unlock.user), 422, "validation_error")

    db.execute(
        "UPDATE unlock_feedback SET created_at = now() - interval '61 minutes' WHERE unlock_id = %s", [unlock.id]
    )
    problem = assert_problem(world.http.patch(url, json={"rating": 1}, headers=unlock.user), 409, "feedback_locked")
    assert "editable_until" in problem
    assert db.execute("SELECT rating FROM unlock_feedback WHERE unlock_id = %s", [unlock.id]).fetchone()["rating"] == 4


def test_the_edit_window_follows_the_setting(world, db, shop, monkeypatch, settings):
    monkeypatch.setattr(settings, "feedback_edit_minutes", 5)
    unlock = redeemed(world, shop)
    body = give(world, unlock, rating=5).json()
    assert datetime.fromisoformat(body["editable_until"]) - datetime.fromisoformat(body["created_at"]) == timedelta(
        minutes=5
    )
    db.execute("UPDATE unlock_feedback SET created_at = now() - interval '6 minutes' WHERE unlock_id = %s", [unlock.id])
    r = world.http.patch(f"/v1/unlocks/{unlock.id}/feedback", json={"rating": 6}, headers=unlock.user)
    assert_problem(r, 409, "feedback_locked")


# --------------------------------------------------------------------------- conversations


def test_a_comment_opens_the_conversation_the_merchant_answers_and_the_customer_reads(world, shop):
    unlock = redeemed(world, shop)
    staff = shop.merchant.staff
    r = give(world, unlock, rating=2, comment="The bun was cold")
    assert r.status_code == 201, r.text
    conversation_id = r.json()["conversation_id"]
    assert conversation_id

    (item,) = inbox(world, shop.merchant.marketer)["items"]
    assert (item["id"], item["status"], item["unread"], item["feedback"]["rating"]) == (conversation_id, "open", 1, 2)
    assert item["last_message"]["body"] == "The bun was cold" and item["last_message"]["author"] == "customer"
    assert item["waiting_since"] is not None and item["first_reply_at"] is None
    assert item["unlock"]["state"] == "redeemed" and item["unlock"]["code_masked"] == "****-****-" + unlock.code[-4:]

    # A message about the same unlock joins the same conversation.
    r = write(world, unlock, "  And the staff were rude\n")
    assert r.status_code == 201, r.text
    assert r.json()["conversation_id"] == conversation_id and r.json()["body"] == "And the staff were rude"
    assert r.json()["author"] == "customer"
    waiting_since = conversation(world, staff, conversation_id)["waiting_since"]

    r = answer(world, staff, conversation_id, "We are sorry: the next bun is on us.")
    assert r.status_code == 201, r.text
    reply = r.json()
    assert (reply["author"], reply["conversation_id"]) == ("merchant", conversation_id)
    assert reply["staff"].startswith("merchant_staff-")  # the merchant sees which of its staff replied
    answered = conversation(world, staff, conversation_id)
    assert (answered["status"], answered["unread"], answered["waiting_since"]) == ("answered", 0, None)
    assert answered["first_reply_at"] == reply["created_at"]
    assert [m["author"] for m in answered["messages"]] == ["customer", "customer", "merchant"]
    assert [m["kind"] for m in answered["messages"]] == ["feedback", "message", "message"]

    (thread,) = mine(world, unlock.user)
    assert thread["id"] == conversation_id and thread["status"] == "answered" and thread["unread"] == 1
    assert thread["messages"][-1]["body"] == "We are sorry: the next bun is on us."
    assert "staff" not in thread["messages"][-1]  # never which staff member
    assert thread["feedback"]["rating"] == 2 and thread["merchant"]["name"] == "Bakeriet"
    r = world.http.post(f"/v1/me/conversations/{conversation_id}/read", headers=unlock.user)
    assert r.status_code == 204, r.text
    assert mine(world, unlock.user)[0]["unread"] == 0

    # The customer writes again: open again, waiting since this new message.
    assert write(world, unlock, "Thanks!").status_code == 201
    reopened = conversation(world, staff, conversation_id)
    assert reopened["status"] == "open" and reopened["unread"] == 1
    assert reopened["waiting_since"] == reopened["messages"][-1]["created_at"] > waiting_since
    assert world.http.post(f"/v1/conversations/{conversation_id}/read", headers=shop.merchant.admin).status_code == 204
    assert conversation(world, staff, conversation_id)["unread"] == 0

    r = world.http.post(f"/v1/conversations/{conversation_id}/close", headers=staff)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["waiting_since"]) == ("closed", None) and r.json()["closed_at"]
    assert (
        world.http.post(f"/v1/conversations/{conversation_id}/close", headers=staff).json()["closed_at"]
        == (r.json()["closed_at"])
    )
    assert write(world, unlock, "One more thing").status_code == 201
    assert conversation(world, staff, conversation_id)["status"] == "open"


def test_a_customer_writes_about_an_unredeemed_unlock_and_the_merchant_answers(world, shop):
    unlock = unlock_at(world, shop)
    r = write(world, unlock, "The code did not work at the till")
    assert r.status_code == 201, r.text
    conversation_id = r.json()["conversation_id"]
    item = conversation(world, shop.merchant.admin, conversation_id)
    assert item["unlock"]["state"] == "active" and item["feedback"] is None
    assert answer(world, shop.merchant.admin, conversation_id, "Please show it to staff again").status_code == 201
    (thread,) = mine(world, unlock.user)
    assert [m["author"] for m in thread["messages"]] == ["customer", "merchant"]


def test_the_merchant_sees_a_pseudonym_stable_for_it_and_never_the_sub(world, shop, settings, monkeypatch):
    other = open_shop(world, "Kaffebaren", center=near(shop.venue["center"], 500))
    sub, user = new_user(world)
    earlier = datetime.now(UTC) - timedelta(minutes=9)  # then a walk to the other merchant's venue
    first = unlock_at(world, shop, sub_and_user=(sub, user), observed_at=earlier)
    elsewhere = unlock_at(world, other, sub_and_user=(sub, user), observed_at=earlier + timedelta(minutes=4))
    for unlock in (first, elsewhere):
        assert write(world, unlock, "Hi").status_code == 201

    here = inbox(world, shop.merchant.admin)
    there = inbox(world, other.merchant.admin)
    (mine_here,), (mine_there,) = here["items"], there["items"]
    assert mine_here["customer"] == customer_pseudonym(settings, shop.merchant.id, sub)
    assert mine_here["customer"] != mine_there["customer"]
    assert mine_here["customer"].startswith("cust-") and len(mine_here["customer"]) == len("cust-") + 12
    detail = conversation(world, shop.merchant.admin, mine_here["id"])
    assert sub not in json.dumps(here) + json.dumps(there) + json.dumps(detail)

    # A second unlock of the same customer at the same merchant: the same pseudonym.
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    again = unlock_at(world, shop, sub_and_user=(sub, user))
    assert write(world, again, "Me again").status_code == 201
    assert {item["customer"] for item in inbox(world, shop.merchant.admin)["items"]} == {mine_here["customer"]}


def test_a_merchant_never_sees_another_merchants_conversations(world, shop):
    other = open_shop(world, "Kaffebaren")
    unlock = unlock_at(world, shop)
    conversation_id = write(world, unlock, "Hello").json()["conversation_id"]
    for headers in (other.merchant.admin, other.merchant.staff):
        assert_problem(world.http.get(f"/v1/conversations/{conversation_id}", headers=headers), 404, "not_found")
        assert_problem(answer(world, headers, conversation_id, "Not yours"), 404, "not_found")
        for action in ("close", "read"):
            r = world.http.post(f"/v1/conversations/{conversation_id}/{action}", headers=headers)
            assert_problem(r, 404, "not_found")
        assert inbox(world, headers)["items"] == []
    for params in ({"venue_id": shop.venue["id"]}, {"campaign_id": shop.campaign["id"]}):
        r = world.http.get("/v1/conversations", params=params, headers=other.merchant.admin)
        assert_problem(r, 404, "not_found")
    assert_problem(world.http.get(f"/v1/conversations/{uuid.uuid4()}", headers=shop.merchant.admin), 404)
    assert [m["author"] for m in conversation(world, shop.merchant.admin, conversation_id)["messages"]] == ["customer"]


def test_marketers_read_and_only_admins_and_staff_answer(world, shop):
    unlock = unlock_at(world, shop)
    conversation_id = write(world, unlock, "Hello").json()["conversation_id"]
    marketer = shop.merchant.marketer
    assert conversation(world, marketer, conversation_id)["status"] == "open"
    assert_problem(answer(world, marketer, conversation_id, "Hi"), 403, "forbidden_role")
    for action in ("close", "read"):
        assert_problem(world.http.post(f"/v1/conversations/{conversation_id}/{action}", headers=marketer), 403)
    assert conversation(world, marketer, conversation_id)["unread"] == 1  # a marketer reading marks nothing


def _walk(world, headers, limit: int = 1, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page = inbox(world, headers, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(items) < 100


def test_the_inbox_puts_the_longest_waiting_first_then_the_latest_change_and_filters(world, db):
    shop = open_shop(world, venues=2)
    station = shop.venues[1]
    staff = shop.merchant.staff
    ids = {}
    for name, venue, rating in (
        ("waits_1h", shop.venue, 2),
        ("waits_5h", station, None),
        ("waits_3h", shop.venue, 6),
        ("answered_old", shop.venue, None),
        ("answered_new", station, 1),
        ("closed", shop.venue, None),
    ):
        unlock = unlock_at(world, shop, venue=venue)
        if rating is not None:
            redeem(world, shop, unlock, venue)
            ids[name] = give(world, unlock, rating=rating, comment=f"About {name}").json()["conversation_id"]
        else:
            ids[name] = write(world, unlock, f"About {name}").json()["conversation_id"]
    for name in ("answered_old", "answered_new"):
        assert answer(world, staff, ids[name], "Thanks").status_code == 201
    assert world.http.post(f"/v1/conversations/{ids['closed']}/close", headers=staff).status_code == 200
    for name, waited, changed in (
        ("waits_1h", "1 hour", None),
        ("waits_5h", "5 hours", None),
        ("waits_3h", "3 hours", None),
        ("answered_old", None, "2 hours"),
        ("answered_new", None, "30 minutes"),
        ("closed", None, None),
    ):
        if waited:
            db.execute(
                "UPDATE conversations SET waiting_since = now() - %s::interval WHERE id = %s", [waited, ids[name]]
            )
        if changed:
            db.execute(
                "UPDATE conversations SET last_message_at = now() - %s::interval WHERE id = %s", [changed, ids[name]]
            )
    name_of = {v: k for k, v in ids.items()}

    def names(items):
        return [name_of[item["id"]] for item in items]

    everything = ["waits_5h", "waits_3h", "waits_1h", "closed", "answered_new", "answered_old"]
    assert names(inbox(world, staff)["items"]) == everything
    assert names(_walk(world, staff)) == everything  # one at a time across both parts: nothing lost or repeated
    assert names(_walk(world, staff, limit=2, status="open")) == ["waits_5h", "waits_3h", "waits_1h"]
    assert names(inbox(world, staff, status="answered")["items"]) == ["answered_new", "answered_old"]
    assert names(inbox(world, staff, status="closed")["items"]) == ["closed"]
    assert names(inbox(world, staff, rating_max=2)["items"]) == ["waits_1h", "answered_new"]
    assert names(inbox(world, staff, venue_id=station["id"])["items"]) == ["waits_5h", "answered_new"]
    assert names(inbox(world, staff, campaign_id=shop.campaign["id"], status="open")["items"]) == everything[:3]
    for params in ({"cursor": "nonsense"}, {"cursor": "x" + "A" * 20}, {"status": "pending"}, {"rating_max": 8}):
        assert_problem(world.http.get("/v1/conversations", params=params, headers=staff), 422, "validation_error")


def test_messages_are_bounded_stripped_and_plain_text(world, shop):
    unlock = unlock_at(world, shop)
    for body in ("", "   \n\t ", "x" * 2001, "nul\x00byte", "bell\x07", "\x9b[31m"):
        r = world.http.post(f"/v1/unlocks/{unlock.id}/messages", json={"body": body}, headers=unlock.user)
        assert_problem(r, 422, "validation_error")
    lone_surrogate = b'{"body": "half a character: \\ud800"}'  # valid JSON, not text
    r = world.http.post(
        f"/v1/unlocks/{unlock.id}/messages",
        content=lone_surrogate,
        headers={**unlock.user, "Content-Type": "application/json"},
    )
    assert_problem(r, 422, "validation_error")
    for body in ({}, {"body": "hi", "author": "merchant"}, {"body": 5}):
        r = world.http.post(f"/v1/unlocks/{unlock.id}/messages", json=body, headers=unlock.user)
        assert_problem(r, 422, "validation_error")
    longest = "å" * 2000
    r = write(world, unlock, f"  {longest}\n")
    assert r.status_code == 201 and r.json()["body"] == longest, r.text
    r = write(world, unlock, "Line one\n\tLine two")
    assert r.json()["body"] == "Line one\n\tLine two"
    conversation_id = r.json()["conversation_id"]
    assert_problem(answer(world, shop.merchant.staff, conversation_id, " "), 422, "validation_error")
    r = give(world, redeemed(world, shop), rating=5, comment="y" * 2001)
    assert_problem(r, 422, "validation_error")


def test_a_customer_writing_too_often_waits_and_the_merchant_is_not_capped(world, shop, monkeypatch, settings):
    monkeypatch.setattr(settings, "conversation_messages_per_hour", 3)
    unlock = unlock_at(world, shop)
    for i in range(3):
        assert write(world, unlock, f"Message {i}").status_code == 201
    r = write(world, unlock, "One too many")
    problem = assert_problem(r, 429, "rate_limited")
    assert 3500 < int(r.headers["Retry-After"]) <= 3600 and problem["retry_after"] == int(r.headers["Retry-After"])
    conversation_id = mine(world, unlock.user)[0]["id"]
    for i in range(5):
        assert answer(world, shop.merchant.staff, conversation_id, f"Reply {i}").status_code == 201
    # Another unlock's conversation has its own cap.
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    assert write(world, unlock_at(world, shop, sub_and_user=(unlock.sub, unlock.user)), "Hello").status_code == 201


def test_the_cap_is_exact_when_messages_arrive_at_once(world, shop, base_url, monkeypatch, settings):
    monkeypatch.setattr(settings, "conversation_messages_per_hour", 5)
    unlock = unlock_at(world, shop)

    def send(i: int) -> int:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            url = f"/v1/unlocks/{unlock.id}/messages"
            return client.post(url, json={"body": f"At once {i}"}, headers=unlock.user).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(send, range(12)))
    assert sorted(statuses) == [201] * 5 + [429] * 7
    (thread,) = mine(world, unlock.user)
    assert len(thread["messages"]) == 5


def test_feedback_given_at_once_is_given_once_with_one_conversation(world, db, shop, base_url):
    unlock = redeemed(world, shop)

    def send(i: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            body = {"rating": 1 + i % 7, "comment": f"Comment {i}"}
            return client.post(f"/v1/unlocks/{unlock.id}/feedback", json=body, headers=unlock.user)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7
    assert all(r.json()["code"] == "feedback_exists" for r in answers if r.status_code == 409)
    assert (
        db.execute("SELECT count(*) AS n FROM unlock_feedback WHERE unlock_id = %s", [unlock.id]).fetchone()["n"] == 1
    )
    (thread,) = mine(world, unlock.user)
    assert len(thread["messages"]) == 1


def test_first_messages_at_once_open_one_conversation(world, db, shop, base_url):
    unlock = unlock_at(world, shop)

    def send(i: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            return client.post(f"/v1/unlocks/{unlock.id}/messages", json={"body": f"Hi {i}"}, headers=unlock.user)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    assert [r.status_code for r in answers] == [201] * 6
    assert len({r.json()["conversation_id"] for r in answers}) == 1
    (thread,) = mine(world, unlock.user)
    assert len(thread["messages"]) == 6 and thread["status"] == "open"
    times = [m["created_at"] for m in thread["messages"]]
    assert times == sorted(times) and len(set(times)) == 6


def test_the_customers_list_pages_newest_first(world, shop, monkeypatch, settings):
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    sub_and_user = new_user(world)
    made = []
    for i in range(3):
        unlock = unlock_at(world, shop, sub_and_user=sub_and_user)
        made.append(write(world, unlock, f"Number {i}").json()["conversation_id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = world.http.get("/v1/me/conversations", params=params, headers=sub_and_user[1]).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    r = world.http.get("/v1/me/conversations", params={"cursor": "garbage"}, headers=sub_and_user[1])
    assert_problem(r, 422, "validation_error")


# --------------------------------------------------------------------------- pseudonyms and their key


def test_a_pseudonym_is_keyed_scoped_and_short():
    key = b"k" * 32
    name = pseudonym("alice@example.com", "merchant-1", key=key)
    assert name == pseudonym("alice@example.com", "merchant-1", key=key)
    assert name.startswith("cust-") and len(name) == 17 and int(name[5:], 16) >= 0
    assert name != pseudonym("alice@example.com", "merchant-2", key=key)
    assert name != pseudonym("alice@example.com", "merchant-1", key=b"j" * 32)
    assert name != pseudonym("alice@example.com", "merchant-1", key=key, prefix="fraud")
    for subject, scope, prefix in (("alice", "m", "Cust-1"), ("a\0b", "m", "cust"), ("a", "m\0", "cust")):
        with pytest.raises(ValueError):  # parts that could run together, or an odd prefix
            pseudonym(subject, scope, key=key, prefix=prefix)


@pytest.fixture
def no_key_env(monkeypatch):
    """Settings from arguments alone, none of the test suite's CHECKIN_* variables."""
    for name in [name for name in os.environ if name.startswith("CHECKIN_")]:
        monkeypatch.delenv(name)


JWKS = "https://idp.example.com/.well-known/jwks.json"
SECRET = "a-real-production-secret-of-32-bytes+"


def test_production_with_a_jwks_needs_a_pseudonym_key(no_key_env):
    with pytest.raises(ValidationError, match="needs CHECKIN_PSEUDONYM_KEY"):
        Settings(env="production", jwks_url=JWKS)
    with pytest.raises(ValidationError, match="needs CHECKIN_PSEUDONYM_KEY"):
        Settings(env="production", jwks_url=JWKS, pseudonym_key="")  # an empty variable is unset
    assert Settings(env="production", jwks_url=JWKS, pseudonym_key=GOOD_KEY).pseudonym_key == GOOD_KEY
    assert Settings(env="test", jwks_url="http://127.0.0.1/jwks.json").pseudonym_key is None  # derived
    assert Settings(env="production", jwt_secret=SECRET).pseudonym_key is None  # derived from the secret


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("k" * 31, "at least 32 bytes"),
        ("k" * 40, "fewer than 16 distinct characters"),
        ("0123456789abcdef" * 3, "one shorter string repeated"),
        (SECRET, "must not be the JWT secret"),
    ],
)
def test_outside_development_a_weak_pseudonym_key_is_refused(no_key_env, key, message):
    with pytest.raises(ValidationError, match=message):
        Settings(env="production", jwt_secret=SECRET, pseudonym_key=key)
    if message != "at least 32 bytes":
        assert Settings(env="development", jwt_secret=SECRET, pseudonym_key=key).pseudonym_key == key


def test_a_derived_key_differs_from_the_secret_and_follows_it(no_key_env):
    from core.pseudonyms import pseudonym_key

    derived = pseudonym_key(Settings(env="production", jwt_secret=SECRET))
    assert len(derived) == 32 and SECRET.encode() not in derived
    assert derived != pseudonym_key(Settings(env="production", jwt_secret=SECRET + "x"))
    assert pseudonym_key(Settings(env="production", jwt_secret=SECRET, pseudonym_key=GOOD_KEY)) == GOOD_KEY.encode()
