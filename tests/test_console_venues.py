"""Venues in the console: the list and its map, one venue with its check-ins, and creating or
editing a venue by pasting GeoJSON or drawing on the map (Leaflet-Geoman driven by the mouse)."""

from __future__ import annotations

import json
import math
import re
import uuid

import httpx
import pytest

from tests.browser import screenshot
from tests.factories import near, new_user
from tests.test_console_sign_in import bearer, expect_error_page

SESSION = "checkin_session"


def square(center: tuple[float, float], half_m: float) -> dict:
    (w, s), (e, n) = near(center, -half_m, -half_m), near(center, half_m, half_m)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def bow_tie(center: tuple[float, float]) -> dict:
    (w, s), (e, n) = near(center, -30, -30), near(center, 30, 30)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, n], [e, s], [w, n], [w, s]]]}


def venue_id_of(page) -> str:
    found = re.search(r"/dashboard/venues/([0-9a-f-]{36})$", page.url)
    assert found, page.url
    return found[1]


def api_venue(http, merchant, venue_id: str) -> dict:
    r = http.get(f"/v1/venues/{venue_id}", headers=merchant.admin)
    assert r.status_code == 200, r.text
    return r.json()


def csrf_token(http, merchant) -> str:
    """The admin's session CSRF token, as the console's forms carry it."""
    page = http.get("/dashboard/venues/new", headers=merchant.admin).text
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)[1]


def fill_venue_form(page, name: str, timezone: str = "Europe/Oslo", address: str = "") -> None:
    page.fill("#name", name)
    page.fill("#address", address)
    page.fill("#timezone", timezone)


def wait_for_status(page, text: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('geofence-status').textContent.includes(t)", arg=text, timeout=10000
    )


def test_the_venue_list_shows_every_venue_and_its_fence_on_a_map(console, world, http):
    merchant = world.merchant()
    center = world.spot_in("Europe/Berlin")  # the service refuses a zone that is not the position's
    world.venue(merchant, center=center, radius_m=40, name="Harbour kiosk")
    world.venue(merchant, geofence=square(near(center, 400, 150), 30), name="Station cafe", timezone="Europe/Berlin")
    page = console.page(merchant.admin)
    page.goto("/dashboard/venues")
    rows = page.locator("table.venues tbody tr")
    assert rows.count() == 2
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(2)] == ["Harbour kiosk", "Station cafe"]
    text = page.locator("table.venues").inner_text()
    assert "circle, radius 40 m" in text
    assert re.search(r"polygon, 3,[56]\d\d m²", text)  # about 60 m x 60 m
    assert "Europe/Berlin" in text
    page.wait_for_selector("#venues-map path.leaflet-interactive")
    assert page.locator("#venues-map path.leaflet-interactive").count() == 4  # two fences, two dots
    screenshot(page, "venues")

    venue_id = page.locator("table.venues tbody a").first.get_attribute("href").rsplit("/", 1)[1]
    for role in ("marketer", "staff"):
        for path in ("/dashboard/venues", "/dashboard/venues/new", f"/dashboard/venues/{venue_id}"):
            r = http.get(path, headers=getattr(merchant, role))
            assert r.status_code == 403, (role, path)
            assert "Not for your role" in r.text


def test_a_venue_shows_its_recent_checkins_coloured_by_outcome(console, world):
    merchant = world.merchant()
    center = world.spot()
    venue = world.venue(merchant, center=center, radius_m=50, name="Corner bakery")
    elsewhere = world.venue(merchant, name="Far away")
    outcomes = []
    for east in (-20, 0, 20):
        outcomes.append(world.checkin(world.user(), *near(center, east, 10)).json())
    _, regular = new_user(world)
    outcomes.append(world.checkin(regular, *center).json())
    outcomes.append(world.checkin(regular, *near(center, 5, 0)).json())  # too soon again
    outcomes.append(world.checkin(world.user(), *near(center, 0, 220), accuracy_m=20).json())
    outcomes.append(world.checkin(world.user(), *center, accuracy_m=400).json())
    world.checkin(world.user(), *elsewhere["center"])  # another venue's: not on this map
    assert [(o["status"], o["reason"]) for o in outcomes] == [
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("rejected", "too_frequent"),
        ("rejected", "outside_geofence"),
        ("rejected", "accuracy_too_low"),
    ]

    page = console.page(merchant.admin)
    page.goto(f"/dashboard/venues/{venue['id']}")
    assert page.locator("h1").inner_text() == "Corner bakery"
    page.wait_for_selector("#venue-map path.checkin-point")
    assert page.locator("#venue-map path.checkin-point").count() == 7
    legend = {
        item.get_attribute("data-outcome"): item.inner_text().split()[-1]
        for item in page.locator("#legend li[data-outcome]").all()
    }
    assert legend == {"accepted": "4", "accuracy_too_low": "1", "outside_geofence": "1", "too_frequent": "1"}
    colours = {p.get_attribute("fill") for p in page.locator("#venue-map path.checkin-point").all()}
    assert len(colours) == 4  # one per outcome
    assert page.locator("table.checkins tbody tr").count() == 7
    screenshot(page, "venue")


def test_another_merchants_venue_is_a_not_found_page(console, world, http):
    owner, other = world.merchant(), world.merchant()
    venue = world.venue(owner, name="Mine")
    page = console.page(other.admin)
    with page.expect_response(f"**/dashboard/venues/{venue['id']}") as answer:
        page.goto(f"/dashboard/venues/{venue['id']}")
    assert answer.value.status == 404
    expect_error_page(console, page, 404)
    assert page.locator("h1").inner_text() == "Not found"
    assert "Mine" not in page.content()

    for path in (f"/dashboard/venues/{venue['id']}/edit", f"/dashboard/venues/{uuid.uuid4()}", "/dashboard/venues/x"):
        r = http.get(path, headers=other.admin)
        assert r.status_code == 404, path
        assert "Not found" in r.text
    r = http.post(
        f"/dashboard/venues/{venue['id']}/edit",
        data={
            "csrf_token": csrf_token(http, other),
            "name": "Taken",
            "timezone": "UTC",
            "geofence": json.dumps(venue["geofence"]),
        },
        headers=other.admin,
    )
    assert r.status_code == 404
    assert api_venue(http, owner, venue["id"])["name"] == "Mine"


def test_a_venue_pasted_as_geojson_is_saved(console, world, http):
    merchant = world.merchant()
    center = world.spot_in("America/New_York")
    fence = square(center, 25)
    page = console.page(merchant.admin)
    page.goto("/dashboard/venues/new")
    fill_venue_form(page, "Pasted place", "America/New_York", "1 Main St")
    page.fill("#geofence", json.dumps(fence))
    wait_for_status(page, "the API accepts this fence")
    page.wait_for_selector("#venue-editor-map path.leaflet-interactive")  # drawn before saving
    page.click("#venue-form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/venues/[0-9a-f-]{36}$"))
    saved = api_venue(http, merchant, venue_id_of(page))
    assert (saved["name"], saved["timezone"], saved["address"]) == ("Pasted place", "America/New_York", "1 Main St")
    assert saved["geofence"] == fence


def test_a_circle_drawn_on_the_map_is_saved(console, world, http):
    """Drives Geoman as a person would: the toolbar's circle button, then two clicks on the map."""
    merchant = world.merchant()
    lon, lat = world.spot_in("Europe/Oslo")  # the form's zone
    page = console.page(merchant.admin)
    page.goto("/dashboard/venues/new")
    fill_venue_form(page, "Drawn circle")
    page.fill("#goto", f"{lat}, {lon}")
    page.click("#goto-button")  # zoom 17, centred there
    page.click(".leaflet-pm-toolbar .leaflet-pm-icon-circle")
    box = page.locator("#venue-editor-map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx, cy)
    page.mouse.move(cx + 40, cy, steps=5)
    page.mouse.click(cx + 60, cy)
    wait_for_status(page, "the API accepts this fence")
    drawn = json.loads(page.input_value("#geofence"))
    screenshot(page, "venue_form")
    page.click("#venue-form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/venues/[0-9a-f-]{36}$"))

    saved = api_venue(http, merchant, venue_id_of(page))["geofence"]
    assert saved == drawn
    assert saved["type"] == "Circle"
    assert saved["radius_m"] == pytest.approx(60 * metres_per_pixel(lat), rel=0.1)
    two_pixels = 2 * metres_per_pixel(lat) / 111_320 / math.cos(math.radians(lat))  # in degrees
    assert saved["center"] == pytest.approx([lon, lat], abs=two_pixels)


def test_a_polygon_drawn_vertex_by_vertex_is_saved(console, world, http):
    merchant = world.merchant()
    lon, lat = world.spot_in("Europe/Oslo")
    page = console.page(merchant.admin)
    page.goto("/dashboard/venues/new")
    fill_venue_form(page, "Drawn polygon")
    page.fill("#goto", f"{lat}, {lon}")
    page.click("#goto-button")
    page.click(".leaflet-pm-toolbar .leaflet-pm-icon-polygon")
    box = page.locator("#venue-editor-map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    corners = [(-50, -40), (60, -50), (70, 40), (-40, 50)]
    for dx, dy in corners + corners[:1]:  # back on the first vertex closes the ring
        page.mouse.click(cx + dx, cy + dy)
    wait_for_status(page, "the API accepts this fence")
    page.click("#venue-form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/venues/[0-9a-f-]{36}$"))
    saved = api_venue(http, merchant, venue_id_of(page))
    assert saved["geofence"]["type"] == "Polygon"
    assert len(saved["geofence"]["coordinates"][0]) == 5  # four corners, closed
    assert saved["area_m2"] == pytest.approx(pixel_area(corners) * metres_per_pixel(lat) ** 2, rel=0.05)


def metres_per_pixel(lat: float, zoom: int = 17) -> float:
    """Web Mercator at the zoom the editor's "Go to" sets."""
    return 40_075_016.686 * math.cos(math.radians(lat)) / 256 / 2**zoom


def pixel_area(corners: list[tuple[int, int]]) -> float:
    pairs = zip(corners, corners[1:] + corners[:1], strict=True)
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairs)) / 2


def test_an_invalid_polygon_shows_the_api_error_on_the_map_and_by_the_field(console, world, http):
    merchant = world.merchant()
    center = world.spot()
    page = console.page(merchant.admin)
    page.goto("/dashboard/venues/new")
    fill_venue_form(page, "Bow tie")
    page.fill("#geofence", json.dumps(bow_tie(center)))
    wait_for_status(page, "invalid_geometry")  # while typing, before saving
    assert page.locator("#venue-editor-map .fence-error-pin").count() == 1

    with page.expect_response("**/dashboard/venues/new") as answer:
        page.click("#venue-form button[type=submit]")
    assert answer.value.status == 422
    expect_error_page(console, page, 422)
    status = page.locator("#geofence-status").inner_text()
    assert "geofence.coordinates" in status
    assert "Self-intersection" in status
    assert page.locator("#geofence").input_value() == json.dumps(bow_tie(center))  # kept for fixing
    assert page.locator("#name").input_value() == "Bow tie"
    pin = page.locator("#venue-editor-map .fence-error-pin")
    assert pin.count() == 1
    assert "Self-intersection" in page.locator(".fence-error-tip").inner_text()
    screenshot(page, "venue_form_error")
    r = http.get("/v1/venues", headers=merchant.admin)
    assert r.json()["items"] == []


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "at least 1 character"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA time zone"),
        ({"geofence": "{"}, "geofence", "not valid JSON"),
        ({"geofence": '{"type": "Circle", "center": [10, 59], "radius_m": 5000}'}, "geofence", "radius_m must be"),
        ({"geofence": ""}, "geofence", "Draw a circle"),
        ({"geofence": "[" * 5000 + "]" * 5000}, "geofence", "nested too deeply"),
        # An Oslo café with latitude and longitude swapped lands off Somalia: the zone tells.
        (
            {"timezone": "Europe/Oslo", "geofence": '{"type": "Circle", "center": [59.91, 10.75], "radius_m": 30}'},
            "timezone",
            "check that longitude comes first",
        ),
    ],
)
def test_a_refused_form_names_the_field(http, world, fields, field, message):
    merchant = world.merchant()
    csrf = re.search(
        r'name="csrf_token" value="([0-9a-f]+)"', http.get("/dashboard/venues/new", headers=merchant.admin).text
    )
    body = {"csrf_token": csrf[1], "name": "Kiosk", "timezone": "UTC"} | {
        "geofence": json.dumps({"type": "Circle", "center": [10.75, 59.91], "radius_m": 30})
    }
    r = http.post("/dashboard/venues/new", data=body | fields, headers=merchant.admin, follow_redirects=False)
    assert r.status_code == 422
    error = re.search(rf'id="{field}-(?:error|status)"[^>]*>(.*?)</p>', r.text, re.S)
    assert error and message in error[1], r.text
    assert http.get("/v1/venues", headers=merchant.admin).json()["items"] == []


def test_editing_a_venue_keeps_its_fence_and_changes_its_name(console, world, http):
    merchant = world.merchant()
    venue = world.venue(merchant, name="Old name")
    page = console.page(merchant.admin)
    page.goto(f"/dashboard/venues/{venue['id']}")
    page.click("text=Edit")
    page.wait_for_url(f"**/dashboard/venues/{venue['id']}/edit")
    assert json.loads(page.input_value("#geofence")) == venue["geofence"]
    page.wait_for_selector("#venue-editor-map path.leaflet-interactive")
    page.fill("#name", "New name")
    page.click("#venue-form button[type=submit]")
    page.wait_for_url(f"**/dashboard/venues/{venue['id']}")
    saved = api_venue(http, merchant, venue["id"])
    assert (saved["name"], saved["geofence"]) == ("New name", venue["geofence"])


def test_a_venue_save_without_the_csrf_token_is_refused_and_changes_nothing(base_url, world, http):
    merchant = world.merchant()
    venue = world.venue(merchant, name="Untouched")
    body = {"name": "Changed", "timezone": "UTC", "geofence": json.dumps(venue["geofence"])}
    with httpx.Client(base_url=base_url) as browser_like:  # the session cookie, as a browser would send it
        cookie = {"Cookie": f"{SESSION}={bearer(merchant.admin)}"}
        for path in ("/dashboard/venues/new", f"/dashboard/venues/{venue['id']}/edit"):
            for extra in ({}, {"csrf_token": "f" * 64}):
                r = browser_like.post(path, data=body | extra, headers=cookie, follow_redirects=False)
                assert r.status_code == 403, (path, extra)
                assert "nothing was changed" in r.text
    items = http.get("/v1/venues", headers=merchant.admin).json()["items"]
    assert [v["name"] for v in items] == ["Untouched"]
