"""Customer voice in the console, in Chromium against the running service: staff find the customer
who has waited longest at the top of the inbox, answer them and close the conversation, and the
answer reaches the customer's GET /v1/me/conversations; marketers read without forms; another
merchant's conversation is the 404 page; forms without the session's CSRF token change nothing;
the campaign page shows the satisfaction figures the stats API reports."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser import SCREENSHOTS, screenshot
from tests.factories import new_user, offer_body
from tests.test_console_campaign import mismatches, page_metrics
from tests.test_console_sign_in import bearer

SESSION = "checkin_session"


@pytest.fixture
def shop(world):
    merchant = world.merchant("Bakeriet")
    kiosk = world.venue(merchant, name="Harbour kiosk", timezone="Europe/Oslo")
    campaign = world.campaign(merchant, [kiosk["id"]], [offer_body(title="Free cinnamon bun")])
    return merchant, kiosk, campaign


def customer_writes(world, db, kiosk, body: str, *, waited_hours: float, redeem_with=None, rating=None) -> dict:
    """A new customer unlocks the offer and writes (or rates it with a comment); their message is
    then made `waited_hours` old."""
    sub, user = new_user(world)
    unlock = world.checkin(user, *kiosk["center"]).json()["unlocked"][0]
    if rating is not None:
        r = world.http.post(
            "/v1/redemptions", json={"code": unlock["code"], "venue_id": kiosk["id"]}, headers=redeem_with
        )
        assert r.status_code == 201, r.text
        r = world.http.post(
            f"/v1/unlocks/{unlock['unlock_id']}/feedback", json={"rating": rating, "comment": body}, headers=user
        )
    else:
        r = world.http.post(f"/v1/unlocks/{unlock['unlock_id']}/messages", json={"body": body}, headers=user)
    assert r.status_code == 201, r.text
    conversation_id = r.json()["conversation_id"]
    db.execute(
        "UPDATE conversations SET waiting_since = now() - make_interval(secs => %(s)s),"
        " created_at = now() - make_interval(secs => %(s)s) WHERE id = %(id)s",
        {"s": waited_hours * 3600, "id": conversation_id},
    )
    db.execute(
        "UPDATE conversation_messages SET created_at = now() - make_interval(secs => %(s)s)"
        " WHERE conversation_id = %(id)s",
        {"s": waited_hours * 3600, "id": conversation_id},
    )
    return {"sub": sub, "user": user, "conversation_id": conversation_id}


def test_staff_answer_the_longest_waiting_customer_and_the_app_shows_the_answer(console, world, db, shop):
    merchant, kiosk, _ = shop
    recent = customer_writes(world, db, kiosk, "Do you have oat milk?", waited_hours=0.5)
    waiting = customer_writes(
        world,
        db,
        kiosk,
        "The code did not work at the till and the staff sent me away.",
        waited_hours=26,
        redeem_with=merchant.staff,
        rating=2,
    )

    page = console.page(merchant.staff)
    page.goto("/dashboard/")
    page.click("header nav >> text=Customer voice")
    page.wait_for_selector("#inbox")
    rows = page.locator("#inbox tbody tr")
    assert rows.count() == 2
    assert rows.first.get_attribute("data-conversation") == waiting["conversation_id"]  # oldest unanswered first
    assert "1 d 2 h" in rows.first.inner_text() and "2/7" in rows.first.inner_text()
    assert waiting["sub"] not in page.content() and recent["sub"] not in page.content()
    screenshot(page, "customer-voice-inbox")

    rows.first.locator("td.who a").click()
    page.wait_for_selector("#reply-form")
    assert "staff sent me away" in page.locator("#messages").inner_text()
    assert page.locator("#conversation-status").inner_text() == "open"
    assert re.fullmatch(r"cust-[0-9a-f]{12}", page.locator("h1 .mono").inner_text())
    page.fill("#reply-body", "We are sorry! Show this message at the till and the bun is on us.")
    page.click("#reply-form button[type=submit]")
    page.wait_for_selector("#conversation-notice")
    assert page.locator("#conversation-status").inner_text() == "answered"
    assert page.locator("#messages li[data-author=merchant]").count() == 1
    screenshot(page, "customer-voice-conversation")

    r = world.http.get("/v1/me/conversations", headers=waiting["user"])
    (thread,) = r.json()["items"]
    assert thread["status"] == "answered" and thread["unread"] == 1
    assert thread["messages"][-1] | {"created_at": None, "id": None} == {
        "id": None,
        "conversation_id": waiting["conversation_id"],
        "author": "merchant",
        "kind": "message",
        "body": "We are sorry! Show this message at the till and the bun is on us.",
        "created_at": None,
        "edited_at": None,
    }

    page.click("#close-form button[type=submit]")
    page.wait_for_selector("#conversation-notice")
    assert page.locator("#conversation-status").inner_text() == "closed"
    assert page.locator("#close-form").count() == 0
    page.goto("/dashboard/conversations")
    assert [r.get_attribute("data-conversation") for r in page.locator("#inbox tbody tr").all()] == [
        recent["conversation_id"]
    ]
    page.goto("/dashboard/conversations?status=closed")
    assert page.locator("#inbox tbody tr").first.get_attribute("data-conversation") == waiting["conversation_id"]


def test_marketers_read_without_forms_and_other_merchants_get_the_404_page(console, world, db, shop, http):
    merchant, kiosk, _ = shop
    written = customer_writes(world, db, kiosk, "Hello there", waited_hours=1)
    url = f"/dashboard/conversations/{written['conversation_id']}"

    page = console.page(merchant.marketer)
    page.goto(url)
    assert "Hello there" in page.locator("#messages").inner_text()
    assert page.locator("#reply-form").count() == 0 and page.locator("#close-form").count() == 0
    # A marketer reading marks nothing read.
    item = world.http.get(f"/v1/conversations/{written['conversation_id']}", headers=merchant.admin).json()
    assert item["unread"] == 1
    # Admins and staff opening it do.
    assert http.get(url, headers=merchant.admin).status_code == 200
    item = world.http.get(f"/v1/conversations/{written['conversation_id']}", headers=merchant.admin).json()
    assert item["unread"] == 0

    other = world.merchant("Kaffebaren")
    assert http.get(url, headers=other.staff).status_code == 404
    assert "Hello there" not in http.get("/dashboard/conversations", headers=other.staff).text


def csrf_of(http, headers, url: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', http.get(url, headers=headers).text)[1]


def test_replies_and_closes_need_the_csrf_token_and_a_role_that_answers(base_url, world, db, shop, http):
    merchant, kiosk, _ = shop
    written = customer_writes(world, db, kiosk, "Hello there", waited_hours=1)
    url = f"/dashboard/conversations/{written['conversation_id']}"
    with httpx.Client(base_url=base_url) as browser_like:
        cookie = {"Cookie": f"{SESSION}={bearer(merchant.staff)}"}
        for action, body in (("reply", {"body": "Hi"}), ("close", {})):
            for extra in ({}, {"csrf_token": "f" * 64}):
                r = browser_like.post(f"{url}/{action}", data=body | extra, headers=cookie, follow_redirects=False)
                assert r.status_code == 403, (action, extra, r.text)
    csrf = csrf_of(http, merchant.marketer, "/dashboard/conversations")
    r = http.post(f"{url}/reply", data={"csrf_token": csrf, "body": "Hi"}, headers=merchant.marketer)
    assert r.status_code == 403
    csrf = csrf_of(http, merchant.staff, url)
    r = http.post(f"{url}/reply", data={"csrf_token": csrf, "body": "   "}, headers=merchant.staff)
    assert r.status_code == 422 and "write something first" in r.text
    r = http.post(f"{url}/reply", data={"csrf_token": csrf, "body": "x" * 2001}, headers=merchant.staff)
    assert r.status_code == 422 and "not sent" in r.text
    item = world.http.get(f"/v1/conversations/{written['conversation_id']}", headers=merchant.admin).json()
    assert item["status"] == "open" and len(item["messages"]) == 1


def test_the_campaign_page_shows_the_satisfaction_the_api_reports(console, world, db, shop):
    merchant, kiosk, campaign = shop
    for rating, hours in ((2, 30), (6, 1), (7, 3)):
        customer_writes(
            world, db, kiosk, f"Rated {rating}", waited_hours=hours, redeem_with=merchant.staff, rating=rating
        )
    api = world.http.get(f"/v1/campaigns/{campaign['id']}/stats", headers=merchant.admin).json()
    assert api["satisfaction"]["ratings"] == 3 and api["satisfaction"]["open_over_24h"] == 1

    page = console.page(merchant.admin)
    page.goto(f"/dashboard/campaigns/{campaign['id']}")
    page.wait_for_selector("#satisfaction")
    metrics = page_metrics(page)
    shown = {path for path, _ in metrics if path.startswith("satisfaction.")}
    assert {
        "satisfaction.ratings",
        "satisfaction.rating_mean",
        "satisfaction.answered_share",
        "satisfaction.first_reply_minutes.median",
        "satisfaction.first_reply_minutes.p90",
        "satisfaction.open_over_24h",
        "satisfaction.rating_distribution.6.count",
        "satisfaction.by_offer.0.ratings",
        "satisfaction.by_venue.0.ratings",
    } <= shown
    assert mismatches(metrics, api) == []
    assert page.locator("#satisfaction .kpi-value").first.inner_text() == "5.00"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#satisfaction").screenshot(path=str(SCREENSHOTS / "campaign-satisfaction.png"))
