"""Webhooks in the console: an admin adds an endpoint and sees its secret once, follows its
deliveries (attempts, errors, the next retry), redelivers one, sees why an endpoint was disabled
and enables it again; other roles get the 403 page, another merchant's endpoint the 404 page, and
a form without the session's CSRF token changes nothing."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser import screenshot
from tests.test_console_campaigns import expect_error_page
from tests.test_console_sign_in import bearer
from tests.webhook_receiver import verified

SESSION = "checkin_session"


@pytest.fixture
def shop(world):
    merchant = world.merchant("Bakeriet")
    kiosk = world.venue(merchant, name="Harbour kiosk")
    world.campaign(merchant, [kiosk["id"]])
    return merchant, kiosk


def unlock(world, venue) -> dict:
    r = world.checkin(world.user(), *venue["center"])
    assert r.status_code == 201 and len(r.json()["unlocked"]) == 1, r.text
    return r.json()["unlocked"][0]


def test_an_admin_adds_an_endpoint_follows_its_deliveries_and_redelivers(console, world, db, shop, receiver):
    merchant, kiosk = shop
    page = console.page(merchant.admin)
    page.goto("/dashboard/webhooks")
    page.fill("#url", receiver.url)
    page.uncheck("input[name=events][value=srm_alert]")
    page.click("#webhook-form button[type=submit]")
    secret = page.locator("#webhook-secret code.secret").inner_text()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    screenshot(page, "console-webhooks-secret")
    page.goto("/dashboard/webhooks")  # shown once: never on the page again
    assert secret not in page.content()
    row = page.locator("table.webhooks tbody tr")
    assert row.count() == 1 and receiver.url in row.inner_text() and "enabled" in row.inner_text()
    assert "srm_alert" not in row.inner_text()

    receiver.answer = lambda n: 500 if n < 2 else 204
    unlocked = unlock(world, kiosk)
    receiver.wait_for(lambda rc: len(rc.accepted()) == 1, what="the delivery after two failures")
    row.locator("a", has_text="Deliveries").click()
    page.wait_for_selector("table.deliveries")
    delivery = page.locator("table.deliveries tbody tr").first
    for _ in range(50):  # the worker records the success just after the receiver answered
        if delivery.get_attribute("data-status") == "succeeded":
            break
        page.wait_for_timeout(100)
        page.reload()
    assert delivery.get_attribute("data-status") == "succeeded"
    assert "HTTP 500" in delivery.inner_text() and "HTTP 204" in delivery.inner_text()
    screenshot(page, "console-webhook-deliveries")

    delivery.locator("button", has_text="Redeliver").click()
    page.wait_for_selector("#webhook-message")
    assert "will be sent again" in page.locator("#webhook-message").inner_text()
    receiver.wait_for(lambda rc: sum(map(len, rc.accepted().values())) == 2, what="the redelivery")
    (sent,) = receiver.accepted().values()
    first, again = sent
    assert first.body == again.body
    assert verified(secret, again)["data"]["unlock_id"] == unlocked["unlock_id"]


def test_a_disabled_endpoint_says_why_and_can_be_enabled_again(console, world, db, shop, receiver):
    merchant, _ = shop
    made = world.http.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["offer_unlocked"]}, headers=merchant.admin
    ).json()
    reason = (
        "Disabled on 2026-12-05 10:00 UTC: every delivery attempt failed for 3 days "
        "(since 2026-12-02 09:58 UTC). The last error: HTTP 502."
    )
    db.execute(
        "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = %s,"
        " failing_since = now() - interval '3 days' WHERE id = %s",
        [reason, made["id"]],
    )
    page = console.page(merchant.admin)
    page.goto("/dashboard/webhooks")
    assert reason in page.locator("[data-reason]").inner_text()
    page.goto(f"/dashboard/webhooks/{made['id']}")
    assert page.locator("#disabled-reason").inner_text().startswith(reason)
    assert page.locator("#endpoint-status").inner_text() == "disabled"
    screenshot(page, "console-webhook-disabled")
    page.click("#disabled-reason button[type=submit]")
    page.wait_for_url(f"**/dashboard/webhooks/{made['id']}")
    assert page.locator("#endpoint-status").inner_text() == "enabled"
    assert page.locator("#disabled-reason").count() == 0


def test_a_refused_url_is_said_next_to_the_field(console, world, shop):
    merchant, _ = shop
    page = console.page(merchant.admin)
    page.goto("/dashboard/webhooks")
    page.fill("#url", "https://10.0.0.5/hooks")
    page.click("#webhook-form button[type=submit]")
    expect_error_page(console, page, 422)
    assert "private address" in page.locator("#url-error").inner_text()
    assert page.locator("#url").input_value() == "https://10.0.0.5/hooks"
    page.fill("#url", "https://hooks.example.com/in")
    for box in page.locator("input[name=events]").all():
        box.uncheck()
    page.click("#webhook-form button[type=submit]")
    expect_error_page(console, page, 422)
    assert page.locator("#events-error").inner_text() == "choose at least one event"
    assert page.locator("table.webhooks").count() == 0


def test_only_admins_see_webhooks_and_only_their_own(http, world, shop, receiver):
    merchant, _ = shop
    made = world.http.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["offer_unlocked"]}, headers=merchant.admin
    ).json()
    for headers in (merchant.staff, merchant.marketer):
        assert http.get("/dashboard/webhooks", headers=headers).status_code == 403
        assert http.get(f"/dashboard/webhooks/{made['id']}", headers=headers).status_code == 403
    other = world.merchant()
    assert http.get(f"/dashboard/webhooks/{made['id']}", headers=other.admin).status_code == 404
    assert http.get("/dashboard/webhooks/not-an-id", headers=other.admin).status_code == 404
    assert made["url"] not in http.get("/dashboard/webhooks", headers=other.admin).text


def test_forms_without_the_csrf_token_change_nothing(base_url, world, shop, receiver):
    merchant, _ = shop
    made = world.http.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["offer_unlocked"]}, headers=merchant.admin
    ).json()
    forms = {
        "/dashboard/webhooks": {"url": "https://hooks.example.com/x", "events": "offer_unlocked"},
        f"/dashboard/webhooks/{made['id']}/delete": {},
        f"/dashboard/webhooks/{made['id']}/enable": {},
    }
    with httpx.Client(base_url=base_url) as browser_like:
        cookie = {"Cookie": f"{SESSION}={bearer(merchant.admin)}"}
        for path, body in forms.items():
            for extra in ({}, {"csrf_token": "f" * 64}):
                r = browser_like.post(path, data=body | extra, headers=cookie, follow_redirects=False)
                assert r.status_code == 403, (path, extra, r.text)
    listed = world.http.get("/v1/webhooks", headers=merchant.admin).json()["items"]
    assert [e["id"] for e in listed] == [made["id"]]


def webhook_pages(http, db, merchant) -> list[str]:
    """The console's webhook pages with every form they can show: the list (add, delete) and an
    endpoint that is disabled and has a delivery (enable, redeliver). Nothing is ever sent: the
    endpoint is disabled and its one delivery already given up. For tests that walk every console
    form; `db` is an autocommit psycopg connection to the service's database."""
    body = {"url": "https://hooks.example.com/in", "events": ["offer_unlocked"]}
    made = http.post("/v1/webhooks", json=body, headers=merchant.admin).json()
    db.execute(
        "WITH w AS (UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = 'failed for 3 days'"
        "           WHERE id = %(e)s RETURNING id, merchant_id),"
        " m AS (INSERT INTO webhook_messages (id, source, merchant_id, type, occurred_at, body)"
        "       SELECT gen_random_uuid(), 'test:' || gen_random_uuid(), merchant_id, 'offer_unlocked', now(), '{}'"
        "       FROM w RETURNING id)"
        " INSERT INTO webhook_deliveries (endpoint_id, message_id, status, retry_until, last_error)"
        " SELECT %(e)s, m.id, 'failed', now(), 'HTTP 500' FROM m",
        {"e": made["id"]},
    )
    return ["/dashboard/webhooks", f"/dashboard/webhooks/{made['id']}"]
