"""The wallet, GET /v1/me/offers: keyset pages newest first, an opaque cursor that survives
new unlocks between pages, bounded page sizes, and 422 for a cursor it did not make."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from core.errors import ValidationFailed
from offers.wallet import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from tests.factories import new_user, offer_body

OFFERS_PER_CHECKIN = 5


@pytest.fixture
def shop(world, monkeypatch, settings):
    """A venue where every check-in unlocks five offers at once (so five unlocks share one
    unlocked_at), and check-ins may follow each other without a cooldown."""
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 10_000)
    m = world.merchant()
    venue = world.venue(m)
    offers = [offer_body(title=f"Offer {i}", per_user_limit=1000) for i in range(OFFERS_PER_CHECKIN)]
    world.campaign(m, [venue["id"]], offers)
    return venue


def check_in(world, user, venue, times: int = 1) -> None:
    for _ in range(times):
        r = world.checkin(user, *venue["center"])
        assert r.status_code == 201 and len(r.json()["unlocked"]) == OFFERS_PER_CHECKIN, r.text


def get_page(world, user, **params):
    r = world.http.get("/v1/me/offers", params=params, headers=user)
    assert r.status_code == 200, r.text
    return r.json()


def walk(world, user, limit: int) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        page = get_page(world, user, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert page["items"], "a page with a next cursor is never empty"
        assert pages < 1000, "the cursor does not advance"


def newest_first(db, sub: str) -> list[str]:
    rows = db.execute("SELECT id FROM unlocks WHERE user_id = %s ORDER BY unlocked_at DESC, id DESC", (sub,)).fetchall()
    return [str(row["id"]) for row in rows]


def test_pages_walk_every_offer_once_newest_first_past_the_old_cap_of_200(world, db, shop):
    sub, user = new_user(world)
    check_in(world, user, shop, times=41)  # 205 offers

    items = walk(world, user, limit=MAX_LIMIT)

    assert [i["unlock_id"] for i in items] == newest_first(db, sub)
    assert len(items) == 41 * OFFERS_PER_CHECKIN
    first = get_page(world, user)
    assert len(first["items"]) == DEFAULT_LIMIT and first["next_cursor"]


def test_offers_unlocked_together_are_split_across_pages_without_loss(world, db, shop):
    sub, user = new_user(world)
    check_in(world, user, shop, times=2)
    together = db.execute("SELECT count(DISTINCT unlocked_at) AS n FROM unlocks WHERE user_id = %s", (sub,)).fetchone()
    assert together["n"] == 2  # the five offers of one check-in share their unlocked_at

    for limit in (1, 2, 3, 4):
        assert [i["unlock_id"] for i in walk(world, user, limit)] == newest_first(db, sub), limit


def test_new_unlocks_between_pages_neither_repeat_nor_shift_what_was_seen(world, db, shop):
    sub, user = new_user(world)
    check_in(world, user, shop, times=2)
    before = newest_first(db, sub)

    first = get_page(world, user, limit=3)
    check_in(world, user, shop)  # five newer offers arrive while the app is paging
    seen = [i["unlock_id"] for i in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = get_page(world, user, limit=3, cursor=cursor)
        seen += [i["unlock_id"] for i in page["items"]]
        cursor = page["next_cursor"]

    assert seen == before
    fresh = [i["unlock_id"] for i in get_page(world, user, limit=OFFERS_PER_CHECKIN)["items"]]
    assert set(fresh).isdisjoint(before) and len(fresh) == OFFERS_PER_CHECKIN


def test_the_last_page_has_no_cursor_even_when_it_is_full(world, shop):
    _, user = new_user(world)
    check_in(world, user, shop)

    page = get_page(world, user, limit=OFFERS_PER_CHECKIN)

    assert len(page["items"]) == OFFERS_PER_CHECKIN and page["next_cursor"] is None
    assert get_page(world, new_user(world)[1]) == {"items": [], "next_cursor": None}


def test_a_cursor_shows_only_the_callers_own_offers(world, db, shop):
    a_sub, a = new_user(world)
    b_sub, b = new_user(world)
    check_in(world, user=a, venue=shop)
    check_in(world, user=b, venue=shop)
    cursor_of_a = get_page(world, a, limit=1)["next_cursor"]

    page = get_page(world, b, cursor=cursor_of_a)

    assert {i["unlock_id"] for i in page["items"]} <= set(newest_first(db, b_sub))


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("not a cursor!", id="garbage"),
        pytest.param(str(uuid.uuid4()), id="a-uuid"),
        pytest.param(_b64(f"yesterday|{uuid.uuid4()}"), id="bad-time"),
        pytest.param(_b64("2026-01-01T00:00:00+00:00|not-a-uuid"), id="bad-id"),
        pytest.param(_b64(f"2026-01-01T00:00:00|{uuid.uuid4()}"), id="naive-time"),
        pytest.param(_b64(f"0001-01-01T00:00:00+05:00|{uuid.uuid4()}"), id="before-year-1-in-utc"),
        pytest.param(_b64(f"9999-12-31T23:00:00-05:00|{uuid.uuid4()}"), id="after-9999-in-utc"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe|x").decode(), id="not-utf8"),
    ],
)
def test_a_cursor_it_did_not_make_is_422_invalid_cursor(world, cursor):
    r = world.http.get("/v1/me/offers", params={"cursor": cursor}, headers=world.user())

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("cursor", "invalid_cursor")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": MAX_LIMIT + 1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "x" * 201}, "cursor"),
    ],
)
def test_page_size_and_cursor_length_are_bounded(world, params, field):
    r = world.http.get("/v1/me/offers", params=params, headers=world.user())

    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_a_cursor_round_trips_to_the_same_position():
    at, unlock_id = datetime(2026, 12, 3, 8, 6, 43, 616904, tzinfo=UTC), uuid.uuid4()

    cursor = encode_cursor(at, unlock_id)

    assert decode_cursor(cursor) == (at, unlock_id)
    assert "=" not in cursor and "|" not in cursor  # safe in a query string as it is
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor[:-3])
