"""The till in the console: a code unlocked by a real check-in is looked up, redeemed once,
refused the second time and voided by an admin; staff cannot void; forms without the
session's CSRF token change nothing; the venue is the merchant's own and remembered."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.browser import screenshot
from tests.factories import offer_body
from tests.test_console_sign_in import bearer

SESSION = "checkin_session"
OFFER = offer_body(
    title="Free cinnamon bun", description="With any coffee, all day", terms="One per visit, not with other offers"
)


@pytest.fixture
def shop(world):
    """A merchant with two venues (the till picks one) and a campaign at the first."""
    merchant = world.merchant("Bakeriet")
    kiosk = world.venue(merchant, name="Harbour kiosk")
    world.venue(merchant, name="Station cafe")
    world.campaign(merchant, [kiosk["id"]], [OFFER])
    return merchant, kiosk


def unlocked_code(world, venue) -> dict:
    """A fresh user really checks in at the venue, which unlocks one code."""
    r = world.checkin(world.user(), *venue["center"], accuracy_m=8)
    assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
    (unlock,) = r.json()["unlocked"]
    return unlock


def redemptions_of(db, unlock) -> list[dict]:
    return db.execute(
        "SELECT id, voided_at, void_reason FROM redemptions WHERE unlock_id = %s ORDER BY redeemed_at",
        [unlock["unlock_id"]],
    ).fetchall()


def message(page) -> str:
    return page.locator("#till-message").inner_text()


def pick_venue(page, venue: dict) -> None:
    page.goto("/dashboard/till")
    page.select_option("#venue_id", venue["id"])  # applies at once (till.js)
    page.wait_for_url(f"**/dashboard/till?venue_id={venue['id']}")


def look_up(page, typed: str) -> None:
    page.fill("#code", typed)
    page.click("#lookup-form button[type=submit]")
    page.wait_for_selector("#lookup, #till-message")


def test_a_code_is_looked_up_redeemed_once_and_voided_by_an_admin(console, world, db, shop):
    merchant, kiosk = shop
    unlock = unlocked_code(world, kiosk)
    typed = unlock["code"].lower().replace("-", " ")  # as someone types it off a phone

    till = console.page(merchant.staff)
    pick_venue(till, kiosk)
    till.goto("/dashboard/till")  # the venue is remembered
    assert "Harbour kiosk" in till.locator("h1").inner_text()
    look_up(till, typed)
    card = till.locator("#lookup")
    assert card.locator("h2").inner_text() == "Free cinnamon bun"
    assert "With any coffee, all day" in card.inner_text()
    assert "One per visit, not with other offers" in card.inner_text()
    assert till.locator("#lookup-state").inner_text() == "active"
    assert unlock["code"] in card.inner_text()
    assert redemptions_of(db, unlock) == []  # a look-up redeems nothing
    screenshot(till, "till")

    # A second till looked the same code up before the first redeemed it.
    other_till = console.page(world.headers("merchant_staff", merchant_id=merchant.id))
    pick_venue(other_till, kiosk)
    look_up(other_till, unlock["code"])

    till.click("#redeem-form button[type=submit]")
    till.wait_for_selector("#till-message.ready")
    assert "Redeemed at" in message(till) and "Free cinnamon bun" in message(till)
    assert len(redemptions_of(db, unlock)) == 1
    row = till.locator("table.redemptions tbody tr").first
    assert "****-****-" + unlock["code"][-4:] in row.inner_text()
    assert unlock["code"] not in till.content()  # the list masks codes
    assert till.locator(".void-form").count() == 0  # staff do not void

    look_up(till, typed)
    assert till.locator("#lookup-state").inner_text() == "redeemed"
    assert "Already redeemed at" in message(till)
    assert till.locator("#redeem-form").count() == 0

    other_till.click("#redeem-form button[type=submit]")
    other_till.wait_for_selector("#till-message.alert")
    assert re.search(r"Already redeemed at \d{4}-\d\d-\d\d \d\d:\d\d", message(other_till)), message(other_till)
    assert len(redemptions_of(db, unlock)) == 1

    admin = console.page(merchant.admin)
    admin.goto(f"/dashboard/till?venue_id={kiosk['id']}")
    void_form = admin.locator(f"tr[data-redemption='{redemptions_of(db, unlock)[0]['id']}'] .void-form")
    void_form.locator("input[name=reason]").fill("rang up twice")
    screenshot(admin, "till_admin")
    void_form.locator("button[type=submit]").click()
    admin.wait_for_selector("#till-message.ready")
    assert "Voided at" in message(admin)
    (voided,) = redemptions_of(db, unlock)
    assert voided["voided_at"] is not None and voided["void_reason"] == "rang up twice"
    assert "voided" in admin.locator("table.redemptions tbody tr").first.inner_text()
    assert admin.locator(".void-form").count() == 0


def test_a_post_without_the_csrf_token_is_refused_and_redeems_nothing(base_url, world, db, shop):
    merchant, kiosk = shop
    unlock = unlocked_code(world, kiosk)
    redeemed = world.http.post(
        "/v1/redemptions",
        json={"code": unlocked_code(world, kiosk)["code"], "venue_id": kiosk["id"]},
        headers=merchant.staff,
    ).json()
    forms = {
        "/dashboard/till/lookup": {"venue_id": kiosk["id"], "code": unlock["code"]},
        "/dashboard/till/redeem": {
            "venue_id": kiosk["id"],
            "code": unlock["code"],
            "idempotency_key": str(uuid.uuid4()),
        },
        "/dashboard/till/void": {"venue_id": kiosk["id"], "redemption_id": redeemed["id"], "reason": "x"},
    }
    with httpx.Client(base_url=base_url) as browser_like:  # the session cookie, as a browser sends it
        cookie = {"Cookie": f"{SESSION}={bearer(merchant.admin)}"}
        for path, body in forms.items():
            for extra in ({}, {"csrf_token": "f" * 64}):
                r = browser_like.post(path, data=body | extra, headers=cookie, follow_redirects=False)
                assert r.status_code == 403, (path, extra, r.text)
    assert redemptions_of(db, unlock) == []
    assert (
        db.execute("SELECT voided_at FROM redemptions WHERE id = %s", [redeemed["id"]]).fetchone()["voided_at"] is None
    )


def csrf_of(http, headers, venue_id: str) -> str:
    page = http.get(f"/dashboard/till?venue_id={venue_id}", headers=headers).text
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)[1]


def test_a_double_click_replays_the_one_redemption(http, world, db, shop):
    merchant, kiosk = shop
    unlock = unlocked_code(world, kiosk)
    looked = http.post(
        "/dashboard/till/lookup",
        data={
            "csrf_token": csrf_of(http, merchant.staff, kiosk["id"]),
            "venue_id": kiosk["id"],
            "code": unlock["code"],
        },
        headers=merchant.staff,
    )
    assert looked.status_code == 200
    form = dict(
        re.findall(r'name="(\w+)" value="([^"]*)"', looked.text.split('id="redeem-form"')[1].split("</form>")[0])
    )

    answers = [http.post("/dashboard/till/redeem", data=form, headers=merchant.staff) for _ in range(2)]

    assert [a.status_code for a in answers] == [200, 200]
    assert all('class="banner ready"' in a.text and "Redeemed at" in a.text for a in answers)
    assert len(redemptions_of(db, unlock)) == 1


def test_the_till_says_why_a_code_is_refused(http, world, db, shop, monkeypatch, settings):
    merchant, kiosk = shop
    staff = world.headers("merchant_staff", merchant_id=merchant.id)
    csrf = csrf_of(http, staff, kiosk["id"])

    def look(code: str) -> str:
        r = http.post(
            "/dashboard/till/lookup", data={"csrf_token": csrf, "venue_id": kiosk["id"], "code": code}, headers=staff
        )
        assert r.status_code == 200
        return r.text

    expired = unlocked_code(world, kiosk)
    db.execute("UPDATE unlocks SET expires_at = now() - interval '1 minute' WHERE id = %s", [expired["unlock_id"]])
    assert "Expired at" in look(expired["code"])
    assert "Not found" in look("ZZZZ-ZZZZ-ZZZZ")
    monkeypatch.setattr(settings, "redemption_free_failures_per_staff", 1)
    monkeypatch.setattr(settings, "redemption_first_delay_s", 120.0)
    assert "Not found" in look("ZZZZ-ZZZZ-ZZZY")
    assert "Too many attempts: wait 2 minutes" in look(unlocked_code(world, kiosk)["code"])


def test_the_till_is_for_staff_and_admins_at_their_own_venues(http, world, shop):
    merchant, kiosk = shop
    marketer = http.get("/dashboard/till", headers=merchant.marketer)
    assert marketer.status_code == 403 and "Not for your role" in marketer.text

    other = world.merchant("Other")
    foreign = world.venue(other)
    r = http.get(f"/dashboard/till?venue_id={foreign['id']}", headers=merchant.staff)
    assert r.status_code == 404
    remembered_elsewhere = http.get(
        "/dashboard/till", headers={**merchant.staff, "Cookie": f"till_venue={foreign['id']}"}
    )  # a cookie naming another merchant's venue is ignored
    assert remembered_elsewhere.status_code == 200 and "Pick the venue" in remembered_elsewhere.text
    csrf = csrf_of(http, merchant.staff, kiosk["id"])
    r = http.post(
        "/dashboard/till/lookup",
        data={"csrf_token": csrf, "venue_id": foreign["id"], "code": "x"},
        headers=merchant.staff,
    )
    assert r.status_code == 404
    r = http.post(
        "/dashboard/till/void",
        data={"csrf_token": csrf, "venue_id": kiosk["id"], "redemption_id": str(uuid.uuid4()), "reason": "x"},
        headers=merchant.staff,
    )
    assert r.status_code == 403  # staff do not void, even by hand
