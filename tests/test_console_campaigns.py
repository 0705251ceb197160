"""Campaigns and offers in the console (api/console/campaigns.py), in Chromium against the running
service: an admin sets a campaign up from the browser (a refused form first), adds an offer,
activates, pauses and retires it, and check-ins through the API follow; the list's figures are the
stats API's; who may see and change what; CSRF. Plus the form's plain functions."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from api.console.campaigns import (
    RULE_CHOICES,
    CampaignForm,
    OfferForm,
    check_campaign_form,
    describe_schedule,
    place_errors,
)
from offers.rules import rule_parameters
from tests.browser import screenshot
from tests.factories import offer_body


def expect_error_page(console, page, status: int) -> None:
    """Chromium logs every 4xx document as a console error; this one was the point of the step."""
    pattern = re.compile(rf"^Failed to load resource: the server responded with a status of {status} \(")
    for _ in range(100):  # the console event arrives a little after the response
        found = next((m for m in console.trouble.console_errors if pattern.match(m)), None)
        if found is not None:
            console.trouble.console_errors.remove(found)
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"no {status} page was logged")


def merchant_campaigns(db, merchant) -> list[dict]:
    return db.execute(
        "SELECT id, name, status, starts_at, ends_at FROM campaigns WHERE merchant_id = %s ORDER BY created_at",
        (merchant.id,),
    ).fetchall()


def checkin_unlocks(world, venue: dict) -> list[str]:
    """The titles a new user's check-in at the venue unlocks (through the API)."""
    r = world.checkin(world.user(), *venue["center"])
    assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
    return [u["title"] for u in r.json()["unlocked"]]


def offer_row(page, title: str):
    return page.locator("table.offers tbody tr", has_text=title)


# --------------------------------------------------------------------------- the whole set-up, in the browser


def test_a_new_campaign_with_a_holdout_says_how_long_it_will_need(console, world, db):
    merchant = world.merchant()
    venue = world.venue(merchant, name="Cafe Majorstuen")
    for _ in range(3):  # some history at the venue: three users' accepted check-ins, two days ago
        checkin_unlocks(world, venue)
    db.execute("UPDATE checkins SET received_at = received_at - interval '2 days' WHERE venue_id = %s", [venue["id"]])
    page = console.page(merchant.admin)
    page.goto("/dashboard/campaigns/new")
    page.fill("#name", "Spring coffee")
    page.check(f"input[name=venue_ids][value='{venue['id']}']")
    page.select_option("#timezone", "UTC")
    page.fill("#starts_at", (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#ends_at", (datetime.now(UTC) + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#holdout_percent", "20")
    page.click("#save-campaign")
    page.wait_for_url(re.compile(r"/dashboard/campaigns/[0-9a-f-]+/offers\?notice=created$"))
    plan = page.locator("#power-plan")
    days = world.http.get(
        f"/v1/campaigns/{merchant_campaigns(db, merchant)[0]['id']}/power", headers=merchant.admin
    ).json()["days"]
    assert days is not None and plan.get_attribute("data-power-days") == str(days)
    assert f"about {days:,} days" in plan.inner_text()
    screenshot(page, "campaign_created_power_plan")


def test_an_admin_sets_up_a_campaign_and_runs_its_offer_from_the_browser(console, world, db):
    merchant = world.merchant()
    bakery = world.venue(merchant, name="Bakery Grünerløkka")
    world.venue(merchant, name="Kiosk Storgata")
    page = console.page(merchant.admin)
    page.goto("/dashboard/campaigns")
    page.click("#new-campaign")
    page.wait_for_url("**/dashboard/campaigns/new")

    # Refused first: it ends before it starts. The API's message stands next to the field; nothing is saved.
    page.fill("#name", "Winter buns")
    page.check(f"input[name=venue_ids][value='{bakery['id']}']")
    page.fill("#starts_at", "2031-02-10T09:00")
    page.fill("#ends_at", "2031-02-01T09:00")
    with page.expect_response("**/dashboard/campaigns/new") as answer:
        page.click("#save-campaign")
    assert answer.value.status == 422
    expect_error_page(console, page, 422)
    assert page.locator("#ends_at-error").inner_text() == "ends_at must be after starts_at"
    assert page.locator("#ends_at").get_attribute("aria-invalid") == "true"
    assert page.locator("#name").input_value() == "Winter buns"  # what was typed is kept
    assert page.locator(f"input[name=venue_ids][value='{bakery['id']}']").is_checked()
    assert merchant_campaigns(db, merchant) == []
    screenshot(page, "campaign_form")

    now = datetime.now(UTC).astimezone()
    page.select_option("#timezone", "UTC")
    page.fill("#starts_at", (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#ends_at", (now + timedelta(days=20)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#holdout_percent", "0")  # everyone in treatment: each check-in below unlocks if it may
    page.click("#save-campaign")
    page.wait_for_url(re.compile(r"/dashboard/campaigns/[0-9a-f-]+/offers\?notice=created$"))
    (campaign,) = merchant_campaigns(db, merchant)
    assert (campaign["name"], campaign["status"]) == ("Winter buns", "draft")
    assert page.locator("#campaign-status").inner_text() == "draft"
    assert page.locator("#power-plan").count() == 0  # no holdout, nothing to measure

    # An offer: a rule whose parameter is out of bounds first, then a valid one.
    page.click("#new-offer")
    page.fill("#title", "Free cinnamon bun")
    page.fill("#description", "With any coffee")
    page.fill("#terms", "One per visit")
    page.check("input[name=rule_type][value=nth_checkin]")
    assert page.locator("[name='rule.loyalty.visits']").is_disabled()  # only the chosen rule's parameters are sent
    page.fill("[name='rule.nth_checkin.n']", "1")
    page.fill("#total_limit", "50")
    page.click("#save-offer")
    expect_error_page(console, page, 422)
    assert "greater than or equal to 2" in page.locator("#rule-nth_checkin-n-error").inner_text()
    screenshot(page, "offer_form")
    assert db.execute("SELECT count(*) AS n FROM offers WHERE campaign_id = %s", (campaign["id"],)).fetchone()["n"] == 0
    page.check("input[name=rule_type][value=every_checkin]")
    page.click("#save-offer")
    page.wait_for_url(f"**/dashboard/campaigns/{campaign['id']}/offers")
    row = offer_row(page, "Free cinnamon bun")
    assert row.locator("[data-figure=remaining]").inner_text() == "50 of 50"
    assert row.locator("[data-figure=status]").inner_text() == "active"

    # Activate the campaign: a check-in through the API unlocks the offer.
    page.click("#campaign-actions button[data-action=activate]")
    page.wait_for_url(f"**/dashboard/campaigns/{campaign['id']}/offers")
    assert page.locator("#campaign-status").inner_text() == "active"
    assert checkin_unlocks(world, bakery) == ["Free cinnamon bun"]

    # Pause the offer: the next check-in is accepted and unlocks nothing.
    offer_row(page, "Free cinnamon bun").locator("button[data-status=paused]").click()
    page.wait_for_url(f"**/dashboard/campaigns/{campaign['id']}/offers")
    row = offer_row(page, "Free cinnamon bun")
    assert row.locator("[data-figure=status]").inner_text() == "paused"
    assert row.locator("[data-figure=remaining]").inner_text() == "49 of 50"
    assert checkin_unlocks(world, bakery) == []

    # Retire it: for good (no resume button, and the API refuses to resume it).
    row.locator("details.confirm summary").click()
    row.locator("button[data-status=retired]").click()
    page.wait_for_url(f"**/dashboard/campaigns/{campaign['id']}/offers")
    row = offer_row(page, "Free cinnamon bun")
    assert row.locator("[data-figure=status]").inner_text() == "retired"
    assert row.locator("button").count() == 0
    assert checkin_unlocks(world, bakery) == []
    offer_id = row.get_attribute("data-offer")
    r = world.http.patch(f"/v1/offers/{offer_id}", json={"status": "active"}, headers=merchant.admin)
    assert (r.status_code, r.json()["code"]) == (409, "offer_retired")

    # The list: its status, unlocks and what is left.
    page.goto("/dashboard/campaigns")
    listed = page.locator(f"tr[data-campaign='{campaign['id']}']")
    assert listed.locator(".status").inner_text() == "active"
    assert listed.locator("[data-figure=unlocks]").inner_text() == "1"
    assert listed.locator("[data-figure=effect]").inner_text() == "not measured: no holdout"
    assert listed.locator("a").first.get_attribute("href") == f"/dashboard/campaigns/{campaign['id']}"


def test_an_admin_edits_ends_and_deletes_campaigns(console, world, db):
    merchant = world.merchant()
    venue = world.venue(merchant, name="Harbour cafe")
    other_venue = world.venue(merchant, name="Station cafe")
    active = world.campaign(merchant, [venue["id"]], holdout_percent=10)
    draft = world.campaign(merchant, [venue["id"]], activate=False)
    page = console.page(merchant.admin)

    # The measurement settings of a campaign that has been active are shown but cannot be changed.
    page.goto(f"/dashboard/campaigns/{active['id']}/edit")
    assert page.locator("#holdout_percent").is_disabled() and page.locator("#holdout_percent").input_value() == "10"
    page.fill("#name", "Autumn, renamed")
    page.check(f"input[name=venue_ids][value='{other_venue['id']}']")
    page.click("#save-campaign")
    page.wait_for_url(f"**/dashboard/campaigns/{active['id']}/edit?saved=1")
    got = world.http.get(f"/v1/campaigns/{active['id']}", headers=merchant.admin).json()
    assert got["name"] == "Autumn, renamed" and sorted(got["venue_ids"]) == sorted([venue["id"], other_venue["id"]])
    assert got["holdout_percent"] == 10

    # A refused edit changes nothing, not even the fields that were fine.
    page.fill("#name", "Should not stick")
    page.fill("#ends_at", "2000-01-01T00:00")
    page.click("#save-campaign")
    expect_error_page(console, page, 422)
    assert page.locator("#ends_at-error").is_visible()
    assert world.http.get(f"/v1/campaigns/{active['id']}", headers=merchant.admin).json()["name"] == "Autumn, renamed"

    # End it (a second click confirms); then nothing changes any more.
    page.goto(f"/dashboard/campaigns/{active['id']}/edit")
    page.locator("#campaign-actions details.confirm summary").click()
    page.click("#campaign-actions button[data-action=end]")
    page.wait_for_url(f"**/dashboard/campaigns/{active['id']}/edit")
    assert page.locator("#campaign-status").inner_text() == "ended"
    assert page.locator("#save-campaign").count() == 0 and page.locator("#name").is_disabled()

    # A draft can be deleted, with its offers.
    page.goto(f"/dashboard/campaigns/{draft['id']}/edit")
    page.locator("#campaign-actions details.confirm", has_text="Delete draft").locator("summary").click()
    page.click("#campaign-actions button[data-action=delete]")
    page.wait_for_url("**/dashboard/campaigns")
    assert page.locator(f"tr[data-campaign='{draft['id']}']").count() == 0
    assert db.execute("SELECT count(*) AS n FROM campaigns WHERE id = %s", (draft["id"],)).fetchone()["n"] == 0


def test_a_refused_transition_is_explained_on_the_page(console, world, db):
    merchant = world.merchant()
    empty = world.campaign(merchant, [world.venue(merchant)["id"]], [], activate=False)
    page = console.page(merchant.admin)
    page.goto(f"/dashboard/campaigns/{empty['id']}/offers")
    with page.expect_response(f"**/dashboard/campaigns/{empty['id']}/activate") as answer:
        page.click("#campaign-actions button[data-action=activate]")
    assert answer.value.status == 409
    expect_error_page(console, page, 409)
    assert "at least one offer" in page.locator("#problem").inner_text()
    assert page.locator("#campaign-status").inner_text() == "draft"
    assert db.execute("SELECT status FROM campaigns WHERE id = %s", (empty["id"],)).fetchone()["status"] == "draft"


def test_once_active_an_offers_rule_and_limits_are_shown_but_locked(console, world):
    merchant = world.merchant()
    happy_hour = {"weekdays": [1, 2, 3, 4, 5], "windows": [{"start": "15:00", "end": "17:00"}]}
    offers = [
        offer_body(rule={"type": "nth_checkin", "n": 4}, total_limit=30, per_user_limit=3),
        offer_body(
            title="Half-price pastry",
            description="From the counter",
            rule={"type": "first_checkin"},
            schedule=happy_hour,
            per_user_limit=1,
            total_limit=200,
            redeem_within_minutes=30,
        ),
        offer_body(title="Free coffee for the first 25", rule={"type": "flash", "first_n": 25}, per_user_limit=1),
    ]
    campaign = world.campaign(merchant, [world.venue(merchant)["id"]], offers)
    offer = campaign["offers"][0]
    flash = campaign["offers"][2]
    world.http.patch(f"/v1/offers/{flash['id']}", json={"status": "paused"}, headers=merchant.admin)
    page = console.page(merchant.admin)
    page.goto(f"/dashboard/campaigns/{campaign['id']}/offers/{offer['id']}/edit")
    assert page.locator("input[name=rule_type][value=nth_checkin]").is_disabled()
    assert page.locator("#per_user_limit").is_disabled() and page.locator("#redeem_within_minutes").is_disabled()
    assert page.locator("[name='rule.nth_checkin.n']").input_value() == "4"
    assert page.locator("#total_limit").get_attribute("min") == "30"  # the budget can only grow
    page.fill("#title", "Fifth coffee free")
    page.fill("#total_limit", "45")
    page.click("#save-offer")
    page.wait_for_url(f"**/dashboard/campaigns/{campaign['id']}/offers")
    got = world.http.get(f"/v1/offers/{offer['id']}", headers=merchant.admin).json()
    assert (got["title"], got["rule"], got["total_limit"], got["remaining"]) == (
        "Fifth coffee free",
        {"type": "nth_checkin", "n": 4},
        45,
        45,
    )
    assert (
        offer_row(page, "Half-price pastry").locator("td").nth(2).inner_text() == "Mon, Tue, Wed, Thu, Fri 15:00–17:00"
    )
    assert offer_row(page, "first 25").locator("[data-figure=remaining]").inner_text() == "25 of 25"
    screenshot(page, "offers")


# --------------------------------------------------------------------------- the list's figures


def write_effect(db, campaign_id: str, *, treatment: tuple[int, int], control: tuple[int, int], days_ago: int) -> None:
    """Test data: the effect aggregates the check-in function keeps, as if users of both arms had
    been exposed `days_ago` days ago and (users, returned) of each had come back."""
    day = date.today() - timedelta(days=days_ago)
    for arm, (users, returned) in (("treatment", treatment), ("control", control)):
        db.execute(
            "INSERT INTO campaign_effect (campaign_id, arm, exposure_day, shard, users, returned_users, visits, "
            "visits_sq) VALUES (%s, %s, %s, 0, %s, %s, %s, %s)",
            (campaign_id, arm, day, users, returned, returned, returned),
        )


def write_counters(db, campaign_id: str, venue_id: str, **metrics: int) -> None:
    for metric, n in metrics.items():
        db.execute(
            "INSERT INTO campaign_counters (campaign_id, day, venue_id, metric, shard, n)"
            " VALUES (%s, %s, %s, %s, 0, %s)",
            (campaign_id, date.today() - timedelta(days=20), venue_id, metric, n),
        )


def test_the_list_shows_each_campaigns_figures_as_the_stats_api_does(console, world, db, base_url):
    from sqlalchemy import event

    from core.db import get_engine

    merchant = world.merchant()
    harbour = world.venue(merchant, name="Harbour cafe")
    station = world.venue(merchant, name="Station cafe")
    both = [harbour["id"], station["id"]]
    ready = world.campaign(merchant, both, [offer_body(total_limit=500)], holdout_percent=20, attribution_days=7)
    write_effect(db, ready["id"], treatment=(400, 152), control=(100, 27), days_ago=30)
    write_counters(db, ready["id"], harbour["id"], unlock=380, redemption=214, void=3)
    db.execute(
        "UPDATE offer_budget_shards SET remaining = 0 WHERE offer_id = %s AND shard < 3", (ready["offers"][0]["id"],)
    )
    young = world.campaign(merchant, [station["id"]], holdout_percent=10)
    write_effect(db, young["id"], treatment=(30, 9), control=(4, 1), days_ago=30)
    unmeasured = world.campaign(merchant, [harbour["id"]], [offer_body(title="Unmeasured")], holdout_percent=0)
    draft = world.campaign(merchant, both, [], activate=False)
    names = {
        unmeasured["id"]: "Happy hour (no holdout)",
        ready["id"]: "Free bun, first visit",
        young["id"]: "Fifth coffee free",
        draft["id"]: "Spring (planned)",
    }
    for campaign_id, name in names.items():
        world.http.patch(f"/v1/campaigns/{campaign_id}", json={"name": name}, headers=merchant.admin)

    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    engine = get_engine().sync_engine  # the live server's, in this process
    event.listen(engine, "before_cursor_execute", record)
    page = console.page(merchant.marketer)
    try:
        page.goto("/dashboard/campaigns")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # A page of campaigns reads the effect and the counters once each, not once per campaign.
    assert sum("campaign_effect" in s for s in statements) == 1, statements
    assert sum("campaign_counters" in s for s in statements) == 1, statements

    stats = world.http.get(f"/v1/campaigns/{ready['id']}/stats", headers=merchant.marketer).json()
    assert stats["status"] == "ready"
    row = page.locator(f"tr[data-campaign='{ready['id']}']")
    effect = row.locator("[data-figure=effect]")
    lift = stats["effect"]["absolute_lift"]
    assert effect.get_attribute("data-kind") == "lift"
    assert [float(effect.get_attribute(f"data-{k}")) for k in ("estimate", "ci-low", "ci-high")] == [
        pytest.approx(lift["estimate"]),
        pytest.approx(lift["ci_low"]),
        pytest.approx(lift["ci_high"]),
    ]
    assert effect.locator(".headline").inner_text() == "+11.0 pp"
    assert effect.locator(".interval").inner_text() == "95% interval {} to {} pp".format(
        *(f"{lift[k] * 100:+.1f}".replace("-", "\u2212") for k in ("ci_low", "ci_high"))
    )
    assert row.locator("[data-figure=unlocks]").inner_text() == f"{stats['funnel']['unlocks']:,}" == "380"
    assert row.locator("[data-figure=redemptions]").inner_text() == f"{stats['funnel']['redemptions']:,}" == "211"
    remaining = world.http.get(f"/v1/campaigns/{ready['id']}", headers=merchant.admin).json()["offers"][0]["remaining"]
    assert row.locator("[data-figure=remaining]").get_attribute("data-value") == str(remaining)
    assert "Harbour cafe, Station cafe" in row.inner_text()

    young_stats = world.http.get(f"/v1/campaigns/{young['id']}/stats", headers=merchant.marketer).json()
    assert young_stats["status"] == "below_min_data"
    effects = {
        tr.get_attribute("data-campaign"): tr.locator("[data-figure=effect]").inner_text()
        for tr in page.locator("table.campaigns tbody tr").all()
    }
    assert effects[young["id"]] == "not enough data yet"
    assert effects[draft["id"]] == "not started"
    assert sorted(effects.values()).count("not measured: no holdout") == 1
    statuses = [s.inner_text() for s in page.locator("table.campaigns tbody .status").all()]
    assert statuses == ["active", "active", "active", "draft"]  # running first
    screenshot(page, "campaigns")


# --------------------------------------------------------------------------- who may do what


def test_a_marketer_reads_the_list_and_offers_but_changes_nothing(console, world, http):
    merchant = world.merchant()
    campaign = world.campaign(merchant, [world.venue(merchant)["id"]])
    offer_id = campaign["offers"][0]["id"]
    page = console.page(merchant.marketer)
    page.goto("/dashboard/campaigns")
    assert page.locator(f"tr[data-campaign='{campaign['id']}']").count() == 1
    assert page.locator("#new-campaign").count() == 0 and page.locator(".edit-link").count() == 0
    page.goto(f"/dashboard/campaigns/{campaign['id']}/offers")
    assert page.locator("table.offers tbody tr").count() == 1
    assert page.locator("button, #new-offer, .offer-actions").count() == 1  # only the header's sign-out button
    with page.expect_response(f"**/dashboard/campaigns/{campaign['id']}/edit") as answer:
        page.goto(f"/dashboard/campaigns/{campaign['id']}/edit")
    assert answer.value.status == 403
    expect_error_page(console, page, 403)
    assert page.locator("h1").inner_text() == "Not for your role"

    for path in (
        "/dashboard/campaigns/new",
        f"/dashboard/campaigns/{campaign['id']}/offers/new",
        f"/dashboard/campaigns/{campaign['id']}/offers/{offer_id}/edit",
    ):
        assert http.get(path, headers=merchant.marketer).status_code == 403, path
    for path in ("/dashboard/campaigns", f"/dashboard/campaigns/{campaign['id']}/offers", "/dashboard/campaigns/new"):
        r = http.get(path, headers=merchant.staff)
        assert r.status_code == 403 and "Not for your role" in r.text, path
    token = csrf_of(http, merchant.marketer, "/dashboard/campaigns")  # a valid token, still not an admin
    for path, data in (
        (f"/dashboard/campaigns/{campaign['id']}/pause", {}),
        (f"/dashboard/campaigns/{campaign['id']}/offers/{offer_id}/status", {"status": "retired"}),
    ):
        r = http.post(path, data=data | {"csrf_token": token}, headers=merchant.marketer, follow_redirects=False)
        assert r.status_code == 403, path
    got = world.http.get(f"/v1/campaigns/{campaign['id']}", headers=merchant.admin).json()
    assert (got["status"], got["offers"][0]["status"]) == ("active", "active")


def test_another_merchants_campaign_is_the_404_page(console, world, http):
    owner, other = world.merchant(), world.merchant("Other")
    campaign = world.campaign(owner, [world.venue(owner, name="Secret venue")["id"]])
    offer_id = campaign["offers"][0]["id"]
    page = console.page(other.admin)
    with page.expect_response(f"**/dashboard/campaigns/{campaign['id']}/edit") as answer:
        page.goto(f"/dashboard/campaigns/{campaign['id']}/edit")
    assert answer.value.status == 404
    expect_error_page(console, page, 404)
    assert page.locator("h1").inner_text() == "Not found"
    assert "Secret venue" not in page.content() and campaign["name"] not in page.content()

    mine = world.campaign(other, [world.venue(other)["id"]])
    for path in (
        f"/dashboard/campaigns/{campaign['id']}/offers",
        f"/dashboard/campaigns/{campaign['id']}/offers/new",
        f"/dashboard/campaigns/{campaign['id']}/offers/{offer_id}/edit",
        f"/dashboard/campaigns/{mine['id']}/offers/{offer_id}/edit",  # my campaign, their offer
        f"/dashboard/campaigns/{uuid.uuid4()}/edit",
        "/dashboard/campaigns/not-a-uuid/edit",
    ):
        r = http.get(path, headers=other.admin)
        assert r.status_code == 404 and "Not found" in r.text, path


def csrf_of(http: httpx.Client, headers: dict[str, str], path: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', http.get(path, headers=headers).text)[1]


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(world, http, db):
    merchant = world.merchant()
    venue = world.venue(merchant)
    campaign = world.campaign(merchant, [venue["id"]], activate=False)
    offer_id = campaign["offers"][0]["id"]
    base = f"/dashboard/campaigns/{campaign['id']}"
    form = {"name": "Hijacked", "venue_ids": venue["id"], "timezone": "UTC"}
    posts = [
        ("/dashboard/campaigns/new", form | {"starts_at": "2031-01-01T10:00", "ends_at": "2031-02-01T10:00"}),
        (f"{base}/edit", form),
        (f"{base}/activate", {}),
        (f"{base}/delete", {}),
        (f"{base}/offers/new", {"title": "Hijacked"}),
        (f"{base}/offers/{offer_id}/edit", {"title": "Hijacked"}),
        (f"{base}/offers/{offer_id}/status", {"status": "retired"}),
    ]
    for path, data in posts:
        for token in ({}, {"csrf_token": "0" * 64}):
            r = http.post(path, data=data | token, headers=merchant.admin, follow_redirects=False)
            assert r.status_code == 403, (path, token, r.status_code)
    assert [(c["name"], c["status"]) for c in merchant_campaigns(db, merchant)] == [("Autumn", "draft")]
    offers = db.execute("SELECT title, status FROM offers WHERE campaign_id = %s", (campaign["id"],)).fetchall()
    assert [(o["title"], o["status"]) for o in offers] == [("Free cinnamon bun", "active")]

    # The same post with the page's token goes through.
    token = csrf_of(http, merchant.admin, f"{base}/offers")
    r = http.post(
        f"{base}/offers/{offer_id}/status",
        data={"status": "paused", "csrf_token": token},
        headers=merchant.admin,
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert db.execute("SELECT status FROM offers WHERE id = %s", (offer_id,)).fetchone()["status"] == "paused"


def test_a_draft_offers_rule_and_schedule_change_through_the_form(world, http):
    merchant = world.merchant()
    campaign = world.campaign(merchant, [world.venue(merchant)["id"]], activate=False)
    offer = campaign["offers"][0]
    path = f"/dashboard/campaigns/{campaign['id']}/offers/{offer['id']}/edit"
    token = csrf_of(http, merchant.admin, path)
    form = {
        "csrf_token": token,
        "title": "Late-night bun",
        "description": "d",
        "terms": "t",
        "rule_type": "loyalty",
        "rule.loyalty.visits": "3",
        "rule.loyalty.within_days": "30",
        "rule.flash.first_n": "7",  # another rule's leftover: not sent
        "schedule_shown": "1",
        "schedule.weekdays": ["5", "6"],
        "schedule.windows.0.start": "22:00",
        "schedule.windows.0.end": "02:00",
        "per_user_limit": "2",
        "total_limit": "40",
        "redeem_within_minutes": "90",
    }
    refused = http.post(path, data=form | {"schedule.weekdays": []}, headers=merchant.admin)
    assert refused.status_code == 422
    assert re.search(r'id="schedule-weekdays-error">List should have at least 1 item', refused.text)
    assert world.http.get(f"/v1/offers/{offer['id']}", headers=merchant.admin).json() == offer

    r = http.post(path, data=form, headers=merchant.admin, follow_redirects=False)
    assert r.status_code == 303, r.text
    got = world.http.get(f"/v1/offers/{offer['id']}", headers=merchant.admin).json()
    assert got["rule"] == {"type": "loyalty", "visits": 3, "within_days": 30}
    assert got["schedule"] == {"weekdays": [5, 6], "windows": [{"start": "22:00", "end": "02:00"}]}
    assert (got["title"], got["per_user_limit"], got["total_limit"], got["remaining"]) == ("Late-night bun", 2, 40, 40)

    r = http.post(
        f"/dashboard/campaigns/{campaign['id']}/offers/{offer['id']}/status",
        data={"csrf_token": token},  # no status
        headers=merchant.admin,
    )
    assert r.status_code == 422 and world.http.get(f"/v1/offers/{offer['id']}", headers=merchant.admin).json() == got


# --------------------------------------------------------------------------- plain functions


def test_the_offer_form_offers_exactly_the_declared_rules_and_parameters():
    assert {t: frozenset(p.name for p in c.parameters) for t, c in RULE_CHOICES.items()} == rule_parameters()
    n = RULE_CHOICES["nth_checkin"].parameters[0]
    assert (n.input_name("nth_checkin"), n.minimum, n.maximum) == ("rule.nth_checkin.n", 2, 1000)
    assert "<code>first_n</code>" in RULE_CHOICES["flash"].description


def test_errors_go_to_the_most_specific_slot_of_the_form():
    slots = {"schedule.windows.0", "schedule.weekdays", "rule.nth_checkin.n", "rule", "title"}
    errors = [
        {"field": "schedule.windows.0.start", "message": "Input should be in a valid time format"},
        {"field": "schedule.weekdays.3", "message": "Input should be less than or equal to 7"},
        {"field": "rule", "message": "Value error, unknown"},
        {"field": "campaign_id", "message": "Extra inputs are not permitted"},
        {"field": "title", "message": "first"},
        {"field": "title", "message": "second"},
    ]
    assert place_errors(errors, slots) == {
        "schedule.windows.0": "Input should be in a valid time format",
        "schedule.weekdays": "Input should be less than or equal to 7",
        "rule": "unknown",
        "form": "Extra inputs are not permitted",
        "title": "first",
    }


def test_a_campaign_form_is_read_on_its_zones_clock():
    form = CampaignForm(
        name="Spring",
        venue_ids=(str(uuid.uuid4()),),
        timezone="Europe/Oslo",
        starts_at="2031-03-30T01:30",
        ends_at="2031-04-30T10:00",
        holdout_percent="10",
        attribution_days="14",
    )
    checked = check_campaign_form(form)
    assert not isinstance(checked, list)
    assert checked.starts_at.astimezone(UTC) == datetime(2031, 3, 30, 0, 30, tzinfo=UTC)  # CET, before the change
    assert checked.ends_at.astimezone(UTC) == datetime(2031, 4, 30, 8, 0, tzinfo=UTC)  # CEST
    refused = check_campaign_form(form.__class__(**{**form.__dict__, "starts_at": "soon", "holdout_percent": "60"}))
    assert isinstance(refused, list)
    assert {e["field"]: e["code"] for e in refused} == {
        "starts_at": "datetime_parsing",
        "holdout_percent": "less_than_equal",
    }


def test_an_offer_form_becomes_the_apis_body():
    form = OfferForm(
        title=" Bun ",
        description="d",
        terms="t",
        rule_type="loyalty",
        parameters={"rule.loyalty.visits": "5", "rule.loyalty.within_days": "30", "rule.flash.first_n": "9"},
        weekdays=("5", "6"),
        windows=(("22:00", "02:00"),),
        per_user_limit="1",
        total_limit="100",
        redeem_within_minutes="60",
    )
    body = form.body()
    assert body["title"] == "Bun"
    assert body["rule"] == {"type": "loyalty", "visits": "5", "within_days": "30"}  # another rule's value is dropped
    assert body["schedule"] == {"weekdays": ["5", "6"], "windows": [{"start": "22:00", "end": "02:00"}]}
    every_day = OfferForm(weekdays=tuple("1234567"))
    assert every_day.schedule() is None  # every day, no window: any time
    assert describe_schedule({"weekdays": [5, 6], "windows": [{"start": "22:00", "end": "02:00"}]}) == (
        "Fri, Sat 22:00–02:00"
    )
    assert describe_schedule(None) == "any time"
