"""The API the till and the fraud review need, over HTTP against the real service: the code
look-up, receipts with the offer's texts, the list of redemptions, who the caller is, check-ins
for review, venues that cannot be deleted while a campaign runs there, and venue time zones
checked against the position."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api.console.till import problem_message
from api.routes.codes import _MaskCodes
from core.errors import TooManyRequests
from geo.timezones import fence_position, offsets, venue_timezone, zone_at
from tests.factories import near, offer_body, problem_apart_from_request
from tests.test_errors_and_limits import assert_problem, fields

OSLO = (10.7522, 59.9139)
STOCKHOLM = (18.0686, 59.3293)


def unlocked(world, venue) -> dict:
    """A fresh user checks in at the venue and gets one code."""
    r = world.checkin(world.user(), *venue["center"])
    assert r.status_code == 201, r.text
    (unlock,) = r.json()["unlocked"]
    return unlock


@pytest.fixture
def till(world):
    """A merchant with one venue and a running every-check-in campaign."""
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]], [offer_body(title="Free bun", description="With any coffee", terms="One a day")])
    return m, v


def look_up(world, headers, code, venue_id):
    return world.http.get(f"/v1/codes/{code}", params={"venue_id": venue_id}, headers=headers)


def redeem(world, headers, code, venue_id, key=None):
    extra = {"Idempotency-Key": key} if key else {}
    return world.http.post("/v1/redemptions", json={"code": code, "venue_id": venue_id}, headers={**headers, **extra})


def redemption_rows(db, unlock) -> int:
    return db.execute("SELECT count(*) AS n FROM redemptions WHERE unlock_id = %s", [unlock["unlock_id"]]).fetchone()[
        "n"
    ]


# --- GET /v1/codes/{code} ----------------------------------------------------------------------


def test_a_look_up_shows_the_offer_and_state_and_changes_nothing(world, db, till):
    m, v = till
    unlock = unlocked(world, v)
    typed = " " + unlock["code"].replace("-", " ").lower() + " "

    for headers in (m.staff, m.admin):
        r = look_up(world, headers, typed, v["id"])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body == {
            "code": unlock["code"],
            "offer_id": unlock["offer_id"],
            "title": "Free bun",
            "description": "With any coffee",
            "terms": "One a day",
            "state": "active",
            "expires_at": body["expires_at"],
            "redeemed_at": None,
        }
        assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(unlock["expires_at"])
    assert redemption_rows(db, unlock) == 0
    assert (
        db.execute("SELECT redeemed_at FROM unlocks WHERE id = %s", [unlock["unlock_id"]]).fetchone()["redeemed_at"]
        is None
    )

    receipt = redeem(world, m.staff, unlock["code"], v["id"]).json()
    after = look_up(world, m.staff, unlock["code"], v["id"]).json()
    assert after["state"] == "redeemed"
    assert datetime.fromisoformat(after["redeemed_at"]) == datetime.fromisoformat(receipt["redeemed_at"])


def test_a_look_up_normalises_look_alike_characters_like_a_redemption(world, db, till):
    m, v = till
    unlock = unlocked(world, v)
    code = f"01{uuid.uuid4().hex[:2].upper()}-1{uuid.uuid4().hex[:3].upper()}-0{uuid.uuid4().hex[:3].upper()}"
    db.execute("UPDATE unlocks SET code = %s WHERE id = %s", [code, unlock["unlock_id"]])

    r = look_up(world, m.staff, code.replace("0", "o").replace("1", "l").replace("-", ""), v["id"])

    assert r.status_code == 200, r.text
    assert r.json()["code"] == code


def test_an_expired_code_looks_expired_and_a_redeemed_one_stays_redeemed(world, db, till):
    m, v = till
    unlock = unlocked(world, v)
    db.execute("UPDATE unlocks SET expires_at = now() - interval '1 minute' WHERE id = %s", [unlock["unlock_id"]])
    assert look_up(world, m.staff, unlock["code"], v["id"]).json()["state"] == "expired"

    db.execute(
        "UPDATE unlocks SET redeemed_at = now() - interval '2 minutes' WHERE id = %s", [unlock["unlock_id"]]
    )  # redeemed before it expired: redeemed wins, as in redeem()
    assert look_up(world, m.staff, unlock["code"], v["id"]).json()["state"] == "redeemed"


def test_a_miss_is_the_same_404_as_a_failed_redemption(world, till):
    m, v = till
    other = world.merchant("Other cafe")
    other_venue = world.venue(other)
    world.campaign(other, [other_venue["id"]])
    foreign = unlocked(world, other_venue)["code"]
    real = unlocked(world, v)["code"]
    unknown = real[:-1] + ("X" if real[-1] != "X" else "Y")

    answers = [look_up(world, m.staff, code, v["id"]) for code in (foreign, unknown, "not-a-code")]
    failed_redemption = redeem(world, m.staff, unknown, v["id"])

    expected = problem_apart_from_request(assert_problem(failed_redemption, 404, "not_found"))
    for r in answers:
        assert problem_apart_from_request(assert_problem(r, 404, "not_found")) == expected
    assert look_up(world, other.staff, foreign, other_venue["id"]).status_code == 200  # still its owner's


def test_a_code_for_another_venue_is_the_redemptions_422_and_no_guess(world, till, monkeypatch, settings):
    monkeypatch.setattr(settings, "redemption_free_failures_per_staff", 0)  # a single miss would mean a wait
    monkeypatch.setattr(settings, "redemption_merchant_failures_per_10min", 1)
    m, v = till
    elsewhere = world.venue(m)
    code = unlocked(world, v)["code"]

    for _ in range(3):
        r = look_up(world, m.staff, code, elsewhere["id"])
        assert fields(assert_problem(r, 422, "validation_error")) == ["venue_id"]
        assert r.json()["errors"][0]["code"] == "venue_not_in_campaign"
    assert redeem(world, m.staff, code, elsewhere["id"]).json()["errors"][0]["code"] == "venue_not_in_campaign"
    assert look_up(world, m.staff, code, v["id"]).status_code == 200  # not locked out: wrong venues are no guesses


def test_look_up_misses_and_failed_redemptions_share_the_guessing_limit(world, till, monkeypatch, settings):
    monkeypatch.setattr(settings, "redemption_free_failures_per_staff", 2)
    monkeypatch.setattr(settings, "redemption_first_delay_s", 30.0)
    m, v = till
    staff = world.headers("merchant_staff", merchant_id=m.id)
    code = unlocked(world, v)["code"]

    assert look_up(world, staff, "ZZZZ-ZZZZ-ZZZZ", v["id"]).status_code == 404
    assert redeem(world, staff, "ZZZZ-ZZZZ-ZZZY", v["id"]).status_code == 404
    assert look_up(world, staff, "nonsense", v["id"]).status_code == 404  # the third miss: a 30 s wait

    limited = look_up(world, staff, code, v["id"])
    assert_problem(limited, 429, "rate_limited")
    assert 29 <= int(limited.headers["Retry-After"]) <= 30
    assert_problem(redeem(world, staff, code, v["id"]), 429, "rate_limited")
    # one person's misses hold back no colleague at the same venue, looking up or redeeming
    colleague = world.headers("merchant_staff", merchant_id=m.id)
    assert look_up(world, colleague, code, v["id"]).status_code == 200
    assert redeem(world, colleague, code, v["id"]).status_code == 201


def test_the_merchant_ceiling_counts_look_up_misses_of_all_staff(world, till, monkeypatch, settings):
    monkeypatch.setattr(settings, "redemption_merchant_failures_per_10min", 4)
    m, v = till
    code = unlocked(world, v)["code"]
    for _ in range(4):  # 4 people, one miss each: nobody's own limit is near
        person = world.headers("merchant_staff", merchant_id=m.id)
        assert look_up(world, person, "ZZZZ-ZZZZ-ZZZZ", v["id"]).status_code == 404

    limited = look_up(world, world.headers("merchant_staff", merchant_id=m.id), code, v["id"])

    assert_problem(limited, 429, "rate_limited")
    assert 570 <= int(limited.headers["Retry-After"]) <= 600


def test_a_look_up_needs_a_venue_and_a_till_role(world, till):
    m, v = till
    code = unlocked(world, v)["code"]
    assert fields(assert_problem(world.http.get(f"/v1/codes/{code}", headers=m.staff), 422)) == ["venue_id"]
    assert_problem(look_up(world, m.marketer, code, v["id"]), 403, "forbidden_role")


# --- the receipt ---------------------------------------------------------------------------


def test_the_receipt_names_the_offer_and_a_replay_is_the_same(world, till):
    m, v = till
    unlock = unlocked(world, v)
    key = str(uuid.uuid4())

    first = redeem(world, m.staff, unlock["code"], v["id"], key)
    again = redeem(world, m.staff, unlock["code"].lower(), v["id"], key)

    assert first.status_code == again.status_code == 201, again.text
    assert (first.json()["title"], first.json()["terms"]) == ("Free bun", "One a day")
    assert again.json() == first.json()


def test_a_receipt_stored_before_receipts_had_texts_replays_with_them(world, db, till):
    m, v = till
    unlock = unlocked(world, v)
    staff_sub = f"staff-{uuid.uuid4().hex[:8]}"
    staff = world.headers("merchant_staff", sub=staff_sub, merchant_id=m.id)
    key = str(uuid.uuid4())
    old_receipt = {
        "id": str(uuid.uuid4()),
        "unlock_id": unlock["unlock_id"],
        "offer_id": unlock["offer_id"],
        "venue_id": v["id"],
        "redeemed_at": datetime.now(UTC).isoformat(),
    }
    db.execute(
        "INSERT INTO redemption_keys (merchant_id, staff_sub, key, request_hash, response) VALUES (%s, %s, %s, %s, %s)",
        [
            m.id,
            staff_sub,
            key,
            hashlib.sha256(f"{unlock['code']}|{v['id']}".encode()).hexdigest(),
            json.dumps(old_receipt),
        ],
    )

    r = redeem(world, staff, unlock["code"], v["id"], key)

    assert r.status_code == 201, r.text
    replayed = r.json()
    assert datetime.fromisoformat(replayed.pop("redeemed_at")) == datetime.fromisoformat(old_receipt.pop("redeemed_at"))
    assert replayed == old_receipt | {"title": "Free bun", "terms": "One a day"}


# --- GET /v1/redemptions ---------------------------------------------------------------------


def test_redemptions_are_listed_newest_first_with_masked_codes_a_page_at_a_time(world, till):
    m, v = till
    codes = [unlocked(world, v)["code"] for _ in range(3)]
    receipts = [redeem(world, m.staff, code, v["id"]).json() for code in codes]

    first = world.http.get("/v1/redemptions", params={"venue_id": v["id"], "limit": 2}, headers=m.staff)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["next_cursor"]
    second = world.http.get(
        "/v1/redemptions", params={"venue_id": v["id"], "limit": 2, "cursor": page["next_cursor"]}, headers=m.admin
    ).json()
    assert second["next_cursor"] is None
    items = page["items"] + second["items"]
    assert [i["id"] for i in items] == [r["id"] for r in reversed(receipts)]
    for item, code in zip(items, reversed(codes), strict=True):
        assert item["code_masked"] == "****-****-" + code[-4:]
        assert code not in json.dumps(item)
        assert (item["title"], item["venue_id"], item["voided_at"]) == ("Free bun", v["id"], None)
        assert item["voidable"] is True
        assert item["staff"]
        assert datetime.fromisoformat(item["void_deadline"]) == datetime.fromisoformat(item["redeemed_at"]) + timedelta(
            minutes=30
        )


def test_a_voided_or_old_redemption_cannot_be_voided_again(world, db, till, monkeypatch, settings):
    m, v = till
    voided, old, fresh = (redeem(world, m.staff, unlocked(world, v)["code"], v["id"]).json() for _ in range(3))
    assert world.http.post(f"/v1/redemptions/{voided['id']}/void", json={"reason": "twice"}, headers=m.admin).is_success
    db.execute("UPDATE redemptions SET redeemed_at = now() - interval '31 minutes' WHERE id = %s", [old["id"]])

    items = {i["id"]: i for i in world.http.get("/v1/redemptions", headers=m.staff).json()["items"]}

    assert items[voided["id"]]["voidable"] is False and items[voided["id"]]["void_reason"] == "twice"
    assert items[voided["id"]]["voided_at"]
    assert items[old["id"]]["voidable"] is False
    assert items[fresh["id"]]["voidable"] is True
    monkeypatch.setattr(settings, "void_window_minutes", 0)  # the window is the setting's
    items = {i["id"]: i for i in world.http.get("/v1/redemptions", headers=m.staff).json()["items"]}
    assert items[fresh["id"]]["voidable"] is False


def test_redemptions_are_the_merchants_own(world, till):
    m, v = till
    other = world.merchant("Other")
    other_venue = world.venue(other)
    world.campaign(other, [other_venue["id"]])
    redeem(world, other.staff, unlocked(world, other_venue)["code"], other_venue["id"])
    mine = redeem(world, m.staff, unlocked(world, v)["code"], v["id"]).json()

    assert [i["id"] for i in world.http.get("/v1/redemptions", headers=m.staff).json()["items"]] == [mine["id"]]
    r = world.http.get("/v1/redemptions", params={"venue_id": other_venue["id"]}, headers=m.staff)
    assert_problem(r, 404, "not_found")
    assert_problem(world.http.get("/v1/redemptions", headers=m.marketer), 403, "forbidden_role")
    r = world.http.get("/v1/redemptions", params={"cursor": "bm90IGEgY3Vyc29y"}, headers=m.staff)
    assert fields(assert_problem(r, 422, "validation_error")) == ["cursor"]


# --- GET /v1/merchants/me --------------------------------------------------------------------


def test_me_is_the_merchant_and_the_callers_role(world):
    m = world.merchant("Kaffebrenneriet Grünerløkka")
    for role, headers in (("merchant_admin", m.admin), ("merchant_staff", m.staff), ("marketer", m.marketer)):
        r = world.http.get("/v1/merchants/me", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"id": m.id, "name": "Kaffebrenneriet Grünerløkka", "role": role}

    unseen = str(uuid.uuid4())  # a merchant the identity provider knows and this service not yet
    r = world.http.get("/v1/merchants/me", headers=world.headers("marketer", merchant_id=unseen))
    assert r.json() == {"id": unseen, "name": None, "role": "marketer"}
    assert_problem(world.http.get("/v1/merchants/me", headers=world.user()), 403, "forbidden_role")


# --- GET /v1/checkins --------------------------------------------------------------------------


def test_checkins_for_review_give_the_distance_never_the_position(world):
    m = world.merchant()
    v = world.venue(m, radius_m=50)
    inside = world.checkin(world.user(), *near(v["center"], 10, 0), accuracy_m=8).json()
    outside = world.checkin(world.user(), *near(v["center"], 0, 250), accuracy_m=12).json()
    assert (inside["status"], outside["reason"]) == ("accepted", "outside_geofence")

    r = world.http.get("/v1/checkins", params={"venue_id": v["id"]}, headers=m.admin)

    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["id"] for i in items] == [outside["id"], inside["id"]]  # newest first
    rejected, accepted = items
    assert (rejected["status"], rejected["reason"], rejected["accuracy_m"]) == ("rejected", "outside_geofence", 12)
    assert rejected["distance_to_fence_m"] == pytest.approx(200, abs=2)
    assert rejected["detail"]["distance_m"] == pytest.approx(200, abs=2)
    assert (accepted["reason"], accepted["detail"], accepted["distance_to_fence_m"]) == (None, None, 0)
    for item in items:
        assert not {"lat", "lon", "latitude", "longitude", "position", "user_id"} & set(item)
        assert item["venue_id"] == v["id"] and item["observed_at"] and item["received_at"]

    only = world.http.get("/v1/checkins", params={"status": "rejected"}, headers=m.admin).json()["items"]
    assert [i["id"] for i in only] == [outside["id"]]


def test_checkins_for_review_page_and_stay_the_merchants(world):
    m = world.merchant()
    v = world.venue(m)
    now = datetime.now(UTC)
    sent = [
        world.checkin(world.user(), *v["center"], observed_at=now - timedelta(seconds=s)).json()["id"]
        for s in (30, 20, 10)
    ]
    other = world.merchant("Other")
    other_venue = world.venue(other)
    world.checkin(world.user(), *other_venue["center"])

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = world.http.get("/v1/checkins", params=params, headers=m.admin).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))
    assert_problem(world.http.get("/v1/checkins", params={"venue_id": other_venue["id"]}, headers=m.admin), 404)
    assert_problem(world.http.get("/v1/checkins", params={"venue_id": str(uuid.uuid4())}, headers=m.admin), 404)
    r = world.http.get("/v1/checkins", params={"status": "maybe"}, headers=m.admin)
    assert fields(assert_problem(r, 422, "validation_error")) == ["status"]
    for headers in (m.staff, m.marketer):
        assert_problem(world.http.get("/v1/checkins", headers=headers), 403, "forbidden_role")


# --- deleting a venue in a campaign ----------------------------------------------------------


def test_a_venue_in_an_active_or_paused_campaign_cannot_be_deleted(world):
    m = world.merchant()
    venue = world.venue(m)
    spare = world.venue(m)
    active = world.campaign(m, [venue["id"], spare["id"]])
    paused = world.campaign(m, [venue["id"]])
    assert world.http.post(f"/v1/campaigns/{paused['id']}/pause", headers=m.admin).status_code == 200
    world.campaign(m, [venue["id"]], activate=False)  # a draft does not hold a venue

    r = world.http.delete(f"/v1/venues/{venue['id']}", headers=m.admin)

    problem = assert_problem(r, 409, "venue_in_campaign")
    assert sorted((c["id"], c["status"]) for c in problem["campaigns"]) == sorted(
        [(active["id"], "active"), (paused["id"], "paused")]
    )
    assert "Autumn (active)" in problem["detail"] and "Autumn (paused)" in problem["detail"]
    assert world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin).status_code == 200

    for campaign in (active, paused):
        assert world.http.post(f"/v1/campaigns/{campaign['id']}/end", headers=m.admin).status_code == 200
    assert world.http.delete(f"/v1/venues/{venue['id']}", headers=m.admin).status_code == 204


# --- a venue's time zone against its position --------------------------------------------------


def circle(lon: float, lat: float) -> dict:
    return {"type": "Circle", "center": [lon, lat], "radius_m": 40}


def test_swapped_latitude_and_longitude_are_refused_naming_the_zone_found(world):
    m = world.merchant()
    lon, lat = OSLO  # sent swapped below: (59.91 E, 10.75 N) is in the Arabian Sea
    r = world.http.post(
        "/v1/venues", json={"name": "Kiosk", "timezone": "Europe/Oslo", "geofence": circle(lat, lon)}, headers=m.admin
    )
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"][0]["field"] == "timezone"
    assert problem["errors"][0]["code"] == "timezone_mismatch"
    assert problem["timezone_found"] == "Etc/GMT-4"
    assert "Etc/GMT-4" in problem["detail"] and "Europe/Oslo" in problem["detail"]
    assert world.http.get("/v1/venues", headers=m.admin).json()["items"] == []


def test_a_zone_keeping_the_same_clock_passes_and_an_omitted_one_is_taken_from_the_position(world):
    m = world.merchant()
    body = {"name": "Kiosk", "timezone": "Europe/Stockholm", "geofence": circle(*OSLO)}
    r = world.http.post("/v1/venues", json=body, headers=m.admin)
    assert r.status_code == 201, r.text
    assert r.json()["timezone"] == "Europe/Stockholm"  # the declared zone is kept

    r = world.http.post("/v1/venues", json={"name": "Kiosk", "geofence": circle(*STOCKHOLM)}, headers=m.admin)
    assert r.status_code == 201, r.text
    assert r.json()["timezone"] == "Europe/Stockholm"

    body = {"name": "Kiosk", "timezone": "Europe/Helsinki", "geofence": circle(*STOCKHOLM)}
    problem = assert_problem(world.http.post("/v1/venues", json=body, headers=m.admin), 422)
    assert problem["timezone_found"] == "Europe/Stockholm"


def test_a_patch_of_the_fence_or_the_zone_is_checked(world):
    m = world.merchant()
    venue = world.venue(m, center=OSLO, timezone="Europe/Oslo")
    path = f"/v1/venues/{venue['id']}"
    tokyo = circle(139.6917, 35.6895)

    problem = assert_problem(world.http.patch(path, json={"geofence": tokyo}, headers=m.admin), 422)
    assert (problem["errors"][0]["code"], problem["timezone_found"]) == ("timezone_mismatch", "Asia/Tokyo")
    problem = assert_problem(world.http.patch(path, json={"timezone": "America/New_York"}, headers=m.admin), 422)
    assert problem["errors"][0]["field"] == "timezone"
    assert world.http.patch(path, json={"name": "Renamed only"}, headers=m.admin).status_code == 200

    r = world.http.patch(path, json={"geofence": tokyo, "timezone": "Asia/Tokyo"}, headers=m.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["timezone"], r.json()["name"]) == ("Asia/Tokyo", "Renamed only")


def test_zones_compare_by_their_offsets_now_and_in_six_months():
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    assert offsets("Europe/Oslo", winter) == offsets("Europe/Stockholm", winter)
    assert offsets("Europe/Oslo", winter) != offsets("Etc/GMT-1", winter)  # same in winter, not in summer
    assert offsets("Europe/Oslo", winter) != offsets("Africa/Lagos", winter)
    assert offsets("Nowhere/Atlantis", winter) is None


def test_the_zone_is_read_at_the_fence():
    square = {
        "type": "Polygon",
        "coordinates": [[[10.75, 59.91], [10.76, 59.91], [10.76, 59.92], [10.75, 59.92], [10.75, 59.91]]],
    }
    lon, lat = fence_position(square)
    assert 10.75 < lon < 10.76 and 59.91 < lat < 59.92
    assert zone_at(lon, lat) == "Europe/Oslo"
    assert venue_timezone(square, None) == "Europe/Oslo"
    assert venue_timezone(circle(0.5, 0.5), "UTC") == "UTC"  # at sea, Etc/GMT keeps UTC's clock


def test_access_logs_show_a_looked_up_codes_last_4_characters_only():
    args = ("127.0.0.1:5000", "GET", "/v1/codes/k7qx%20m2pd%209rtw?venue_id=1", "1.1", 200)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
    assert _MaskCodes().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/codes/****9rtw?venue_id=1 HTTP/1.1" 200'


@pytest.mark.parametrize(
    ("retry_after", "shown"),
    [(1, "wait 1 second "), (4, "wait 4 seconds"), (89, "wait 89 seconds"), (240, "wait 4 minutes")],
)
def test_the_till_shows_the_real_wait(retry_after, shown):
    message = problem_message(TooManyRequests(retry_after), venue=None)

    assert message.kind == "waiting" and shown in message.text
