"""The API docs and the console's entry points work with no internet: every asset is served
by the service itself."""

from __future__ import annotations

from tests.browser import screenshot


def test_swagger_ui_renders_the_contract_from_local_assets(console):
    page = console.page()
    page.goto("/docs")
    page.wait_for_selector("#operations-checkins-create_checkin", timeout=15000)
    assert page.locator(".opblock").count() > 10
    screenshot(page, "docs")


def test_redoc_renders_the_contract_from_local_assets(console):
    page = console.page()
    page.goto("/redoc")
    page.wait_for_selector("text=Check in at a venue", timeout=20000)
    screenshot(page, "redoc")


def test_the_root_leads_to_the_console_and_anonymous_visitors_to_sign_in(http):
    r = http.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/")
    r = http.get("/dashboard/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/sign-in")
