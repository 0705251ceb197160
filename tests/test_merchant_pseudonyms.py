"""What a merchant sees of a customer: a pseudonym stable for that merchant and unrelated at
another, never the sub; positions only to about 100 m (3 decimals at most), beside the exact
distance to the fence. Every merchant-facing GET of the API and every console page is read, the
list made from the app's own routes, so a page added later is covered too."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

import pytest

from core.pseudonyms import customer_pseudonym
from geo.checkins import coarse_position
from tests.browser import screenshot
from tests.roles import MERCHANT_ROLES, app_routes
from tests.test_export import Story, customer_story

PSEUDONYM = re.compile(r"cust-[0-9a-f]{12}")
PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
# A "lon"/"lat" member anywhere: in API bodies and in the JSON the console embeds for its maps.
POSITION_MEMBER = re.compile(r'"(?:lon|lat)":\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)')
ROLE_HEADERS = {"merchant_admin": "admin", "merchant_staff": "staff", "marketer": "marketer"}


@pytest.fixture
def story(world, db, receiver) -> Story:
    """The customer's story, told while the shop has a webhook endpoint (its payloads count too)."""
    shop = world.merchant("Bakeriet")
    r = world.http.post("/v1/webhooks", json={"url": receiver.url, "events": ["offer_redeemed"]}, headers=shop.admin)
    assert r.status_code == 201, r.text
    told = customer_story(world, db, shop=shop)
    receiver.wait_for(lambda received: len(received.received) >= 1, what="the redemption's webhook")
    return told


def merchant_gets(app) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(path template, the merchant roles it admits) of every GET a merchant can call."""
    from api.deps import auth_requirement

    for route in app_routes(app):
        if "GET" not in getattr(route, "methods", ()) or not hasattr(route, "dependant"):
            continue
        if route.path.startswith("/dashboard"):
            yield route.path, MERCHANT_ROLES  # the console decides per page; a 403 page is fine
            continue
        requirement = auth_requirement(route.dependant)
        if requirement:
            roles = tuple(r for r in MERCHANT_ROLES if all(r in allowed for allowed in requirement))
            if roles:
                yield route.path, roles


def fill(path: str, values: dict[str, str]) -> str:
    return PATH_PARAMETER.sub(lambda m: values[m[1]], path)


def fix_texts(story: Story, fix: tuple[float, float]) -> set[str]:
    """A precise position as any page might print it: whole, to 4 or 5 decimals (rounded or cut),
    except where that text is also a venue's own coordinate (merchants draw their fences; a fix
    near the door shares digits with it)."""
    venue_texts = " ".join(json.dumps(v["geofence"]) + json.dumps(v["center"]) for v in story.venues)
    found = set()
    for value in fix:
        whole = repr(value)
        point = whole.index(".")
        for text in (whole, f"{value:.4f}", f"{value:.5f}", whole[: point + 5], whole[: point + 6]):
            if text not in venue_texts:
                found.add(text)
    return found


def forbidden_strings(story: Story) -> list[str]:
    return sorted(set().union(*(fix_texts(story, fix) for fix in story.fixes)))


def positions_in(text: str) -> list[str]:
    return POSITION_MEMBER.findall(text)


def assert_private(text: str, story: Story, where: str) -> None:
    assert story.sub not in text, where
    for secret in forbidden_strings(story):
        assert secret not in text, (where, secret)
    for number in positions_in(text):
        decimals = number.partition(".")[2]
        assert len(decimals) <= 3, (where, number)


def test_the_pseudonym_is_stable_within_a_merchant_and_differs_between_merchants(world, db, settings):
    story = customer_story(world, db)
    someone_else = world.user()
    world.checkin(someone_else, *story.venues[1]["center"])
    shop, other = story.shop, story.other

    review = world.http.get("/v1/checkins", params={"limit": 100}, headers=shop.admin).json()["items"]
    mine = {c["id"]: c["customer"] for c in review if c["id"] in {s["id"] for s in story.checkins}}
    assert len(mine) == 4  # two accepted, two rejected at the shop's venues
    (at_shop,) = set(mine.values())
    assert PSEUDONYM.fullmatch(at_shop)
    assert at_shop == customer_pseudonym(settings, shop.id, story.sub)
    assert len({c["customer"] for c in review}) == 2  # and the other customer's, a different one

    redemptions = world.http.get("/v1/redemptions", headers=shop.staff).json()["items"]
    assert len(redemptions) == 2 and {r["customer"] for r in redemptions} == {at_shop}
    (conversation,) = world.http.get("/v1/conversations", headers=shop.marketer).json()["items"]
    assert conversation["customer"] == at_shop
    till = world.http.get("/dashboard/till", params={"venue_id": story.venues[0]["id"]}, headers=shop.staff).text
    assert at_shop in till
    venue_page = world.http.get(f"/dashboard/venues/{story.venues[0]['id']}", headers=shop.admin).text
    assert at_shop in venue_page

    (elsewhere,) = world.http.get("/v1/checkins", headers=other.admin).json()["items"]
    assert PSEUDONYM.fullmatch(elsewhere["customer"]) and elsewhere["customer"] != at_shop
    assert at_shop not in json.dumps(world.http.get("/v1/checkins", headers=other.admin).json())


def test_no_merchant_facing_get_or_page_shows_the_sub_or_a_precise_position(world, db, story, console):
    from api.main import app

    shop = story.shop
    offers = world.http.get(f"/v1/campaigns/{story.campaigns[0]['id']}/offers", headers=shop.admin).json()
    (webhook,) = world.http.get("/v1/webhooks", headers=shop.admin).json()["items"]
    values = {
        "venue_id": story.venues[0]["id"],
        "campaign_id": story.campaigns[0]["id"],
        "offer_id": offers["items"][0]["id"] if isinstance(offers, dict) else offers[0]["id"],
        "conversation_id": story.conversation["id"],
        "code": story.redeemed["code"],
        "webhook_id": webhook["id"],
        "endpoint_id": webhook["id"],
    }
    # The check bites: the customer's own export holds the sub and every position as sent.
    export = world.http.get("/v1/me/export", headers=story.user).text
    assert story.sub in export
    assert all(fix_texts(story, fix) & set(re.findall(r"-?\d+\.\d+", export)) for fix in story.fixes)
    with pytest.raises(AssertionError):
        assert_private(export.replace(story.sub, ""), story, "the export")

    query = {"venue_id": story.venues[0]["id"]}  # the look-up's and the till's venue
    read = []
    for template, roles in merchant_gets(app):
        if template in ("/dashboard/sign-in",):
            continue
        path = fill(template, values)
        for role in roles:
            headers = getattr(shop, ROLE_HEADERS[role])
            r = world.http.get(
                path, params=query if "{code}" in template or "till" in template else None, headers=headers
            )
            assert r.status_code < 500, (path, role, r.text)
            assert_private(r.text, story, f"{role} GET {path}")
            read.append((template, role, r.status_code))
    templates = {template for template, _, status in read if status == 200}
    assert {
        "/v1/checkins",
        "/v1/redemptions",
        "/v1/conversations",
        "/v1/conversations/{conversation_id}",
        "/v1/codes/{code}",
        "/v1/webhooks/{webhook_id}/deliveries",
        "/dashboard/venues/{venue_id}",
        "/dashboard/till",
        "/dashboard/conversations/{conversation_id:uuid}",
        "/dashboard/campaigns/{campaign_id:uuid}",
        "/dashboard/campaigns/{campaign_id:uuid}/stats.csv",
    } <= templates, sorted(templates)

    # The venue's map draws every check-in there, at most 3 decimals, the cell the fix fell in.
    page = world.http.get(f"/dashboard/venues/{story.venues[0]['id']}", headers=shop.admin).text
    points = json.loads(re.search(r'<script type="application/json" id="venue-data">(.*?)</script>', page, re.S)[1])
    shown = {(p["lon"], p["lat"]) for p in points["points"]}
    assert shown == {coarse_position(*fix) for fix in story.fixes[:3]}
    assert {p["distance_to_fence_m"] for p in points["points"]} >= {0}
    outside = [p for p in points["points"] if p["outcome"] == "outside_geofence"]
    assert len(outside) == 1 and 150 < outside[0]["distance_to_fence_m"] < 200  # exact, to 0.1 m

    browser_page = console.page(shop.admin)
    browser_page.goto(f"/dashboard/venues/{story.venues[0]['id']}")
    browser_page.wait_for_selector("#venue-map path.checkin-point")
    assert browser_page.locator("#venue-map path.checkin-point").count() == 3
    assert_private(browser_page.content(), story, "the venue page in the browser")
    screenshot(browser_page, "venue-pseudonyms")
    browser_page.goto(f"/dashboard/till?venue_id={story.venues[0]['id']}")
    assert_private(browser_page.content(), story, "the till in the browser")
    screenshot(browser_page, "till-pseudonyms")


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (10.752245, 59.913868),
        (12.568337, 55.676098),
        (-73.985428, 40.748817),
        (151.2153, -33.8568),
        (0.0004, 0.0004),
        (179.9999, 78.2),
        (-179.9999, -89.99),
    ],
)
def test_a_coarse_position_is_within_a_cell_of_about_100_m_and_has_3_decimals(lon, lat):
    coarse_lon, coarse_lat = coarse_position(lon, lat)
    for value in (coarse_lon, coarse_lat):
        assert len(repr(value).partition(".")[2]) <= 3
    north_m = abs(coarse_lat - lat) * 111_320
    east_m = abs(coarse_lon - lon) * 111_320 * math.cos(math.radians(lat))
    assert north_m <= 56  # half a cell of 0.001°
    assert east_m <= 112 or abs(lat) > 89  # half a cell of at most 2 x 111 m
    # Never finer than 0.001° of latitude, nor narrower on the ground east-west than that.
    step = coarse_position(lon + 0.0001, lat)[0] - coarse_lon
    assert coarse_position(lon, lat + 0.0001)[1] - coarse_lat in (0, 0.001) or abs(lat) > 89
    assert step == 0 or abs(step) * math.cos(math.radians(lat)) >= 0.001 * 0.99
