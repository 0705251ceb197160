"""Signing in to the console with a token, signing out, login CSRF and the development personas."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import jwt
import pytest

from checkin_offers.demo_merchants import COFFEE
from core.auth import mint_token
from tests.browser import screenshot

SESSION = "checkin_session"
PRE_SESSION = "checkin_sign_in"


HTTP_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable Entity"}


def expect_error_page(console, page, status: int) -> None:
    """Chromium logs every 4xx document as a console error; this one was the point of the test."""
    message = f"Failed to load resource: the server responded with a status of {status} ({HTTP_REASONS[status]})"
    for _ in range(100):  # the console event arrives a little after the response
        if message in console.trouble.console_errors:
            console.trouble.console_errors.remove(message)
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"no {status} page was logged")


def submit_and_land(page, button: str) -> None:
    """Click a sign-in button and follow the redirect to /dashboard/ and on to the role's home
    page (campaigns, the till), loaded in full before the test goes on."""
    with page.expect_response(lambda r: re.search(r"/dashboard/(campaigns|till)$", r.url) is not None) as home:
        page.click(button)
    assert home.value.status == 200
    page.wait_for_load_state("load")


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def anon(base_url):
    """A client of its own: the shared `http` client must not keep this test's cookies."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def sign_in_form(client: httpx.Client) -> str:
    """GET the form; returns its pre-session value (the cookie, repeated in the hidden field)."""
    r = client.get("/dashboard/sign-in")
    assert r.status_code == 200, r.text
    value = r.cookies[PRE_SESSION]
    assert f'name="csrf_token" value="{value}"' in r.text
    return value


def post_sign_in(client: httpx.Client, token: str, *, cookie: str | None, field: str | None, **headers: str):
    # Cookies by hand: outside development they are Secure, which httpx never sends over http.
    if cookie is not None:
        headers["Cookie"] = f"{PRE_SESSION}={cookie}"
    data = {"token": token} | ({"csrf_token": field} if field is not None else {})
    return client.post("/dashboard/sign-in", data=data, headers=headers, follow_redirects=False)


def session_set_cookie(response: httpx.Response) -> str | None:
    return next((h for h in response.headers.get_list("set-cookie") if h.startswith(f"{SESSION}=")), None)


def test_sign_in_with_a_token_then_sign_out(console, world):
    merchant = world.merchant()
    token = bearer(merchant.admin)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    page = console.page()
    page.goto("/dashboard/sign-in")
    assert page.locator("#persona-form").count() == 0  # env=test: no demo personas
    screenshot(page, "sign_in")
    page.fill("#token", token)
    submit_and_land(page, "#token-form button[type=submit]")

    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION)
    assert cookie["value"] == token
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is True  # outside development
    assert time.time() < cookie["expires"] <= exp  # never outlives the token
    assert cookie["path"] == "/"
    assert PRE_SESSION not in {c["name"] for c in page.context.cookies()}  # used once

    page.goto("/dashboard/venues")
    assert page.locator("header .who").inner_text().endswith("merchant admin")
    page.click("header .sign-out button")
    page.wait_for_url("**/dashboard/sign-in")
    assert SESSION not in {c["name"] for c in page.context.cookies()}
    page.goto("/dashboard/venues")
    assert page.url.endswith("/dashboard/sign-in")  # signed out for real


def test_a_bad_token_is_refused_with_the_form_and_a_reason(console, anon, world):
    page = console.page()
    page.goto("/dashboard/sign-in")
    page.fill("#token", "not-a-jwt")
    with page.expect_response("**/dashboard/sign-in") as answer:
        page.click("#token-form button[type=submit]")
    assert answer.value.status == 401
    expect_error_page(console, page, 401)
    assert "This is not a JWT" in page.locator("#sign-in-error").inner_text()
    assert page.locator("#token").is_visible()
    assert SESSION not in {c["name"] for c in page.context.cookies()}
    screenshot(page, "sign_in_refused")

    form = sign_in_form(anon)
    claims = jwt.decode(bearer(world.merchant().admin), options={"verify_signature": False})
    forged = jwt.encode(claims, "another-secret-of-the-right-length-0123456789")
    expired = mint_token(world.settings, sub="late", role="merchant_admin", merchant_id=str(uuid.uuid4()), ttl_s=-5)
    huge = jwt.encode(claims | {"groups": ["g" * 60] * 80}, world.settings.jwt_secret)  # valid, but no cookie holds it
    for token, reason in [
        ("", "Paste a token"),
        (forged, "signature does not match"),
        (expired, "This token has expired"),  # inside the clock leeway: verified, but no time left for a cookie
        (huge, "too large to keep in a browser cookie"),
    ]:
        r = post_sign_in(anon, token, cookie=form, field=form)
        assert r.status_code == 401, token
        assert reason in r.text
        assert session_set_cookie(r) is None


@pytest.mark.parametrize("role", ["app_user", "platform_admin"])
def test_tokens_of_roles_outside_the_console_are_refused(anon, world, role):
    form = sign_in_form(anon)
    token = bearer(world.headers(role))
    r = post_sign_in(anon, token, cookie=form, field=form)
    assert r.status_code == 403
    assert f"for the role {role.replace('_', ' ')}" in r.text
    assert session_set_cookie(r) is None


def test_the_sign_in_post_needs_the_pre_session_token(anon, world, settings):
    """Login CSRF: another site cannot sign the browser in with the attacker's token."""
    token = bearer(world.merchant().admin)
    form = sign_in_form(anon)
    issued, nonce, _ = form.split(".")
    unsigned = f"{issued}.{nonce}.{'0' * 64}"
    old = mint_form_token_at(settings, time.time() - 2 * 3600)
    for cookie, field, headers in [
        (None, None, {}),  # a plain cross-site form post
        (None, form, {}),  # the field without the cookie
        (form, None, {}),  # the cookie without the field
        (form, sign_in_form(anon), {}),  # a different form's value
        (unsigned, unsigned, {}),  # made up, not signed by the service
        (old, old, {}),  # signed, but expired
        (form, form, {"Sec-Fetch-Site": "cross-site"}),  # the browser says another site sent it
        (form, "é" + form[1:], {}),  # not ASCII: refused, not an error
    ]:
        r = post_sign_in(anon, token, cookie=cookie, field=field, **headers)
        assert r.status_code == 403, (cookie, field, headers)
        assert "not sent from this site" in r.text
        assert session_set_cookie(r) is None
    assert post_sign_in(anon, token, cookie=form, field=form).status_code == 303


def mint_form_token_at(settings, when: float) -> str:
    from api.console.sign_in import new_form_token

    return new_form_token(settings, when)


def test_the_sign_in_sets_a_cookie_that_ends_with_the_token(anon, world):
    merchant = world.merchant()
    token = mint_token(world.settings, sub="short", role="marketer", merchant_id=merchant.id, ttl_s=120)
    form = sign_in_form(anon)
    r = post_sign_in(anon, token, cookie=form, field=form)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/")
    header = session_set_cookie(r)
    assert header is not None
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")}
    assert {"httponly", "secure", "samesite", "max-age", "path"} <= attributes.keys()
    assert attributes["samesite"].lower() == "samesite=lax"
    assert 110 <= int(attributes["max-age"].split("=")[1]) <= 120


def test_sign_out_without_the_csrf_token_is_refused_and_keeps_the_session(anon, world):
    token = bearer(world.merchant().admin)
    cookie = {"Cookie": f"{SESSION}={token}"}
    r = anon.post("/dashboard/sign-out", headers=cookie, follow_redirects=False)
    assert r.status_code == 403
    assert "nothing was changed" in r.text
    assert session_set_cookie(r) is None
    r = anon.post("/dashboard/sign-out", data={"csrf_token": "0" * 64}, headers=cookie, follow_redirects=False)
    assert r.status_code == 403
    assert session_set_cookie(r) is None
    assert anon.get("/dashboard/venues", headers=cookie, follow_redirects=False).status_code == 200

    # A cookie that no longer verifies has nothing to protect: it is simply cleared.
    r = anon.post("/dashboard/sign-out", headers={"Cookie": f"{SESSION}=stale"}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/sign-in")
    assert 'checkin_session=""' in session_set_cookie(r)


def test_demo_personas_are_absent_outside_development(anon):
    form = sign_in_form(anon)
    page = anon.get("/dashboard/sign-in").text
    assert "persona" not in page.lower()
    r = anon.post(
        "/dashboard/sign-in/persona",
        data={"persona": f"{COFFEE.id}:merchant_admin", "csrf_token": form},
        headers={"Cookie": f"{PRE_SESSION}={form}"},
        follow_redirects=False,
    )
    assert r.status_code == 404
    assert "only in development" in r.text
    assert session_set_cookie(r) is None


def test_demo_personas_sign_in_with_one_click_in_development(console, monkeypatch, settings):
    # The test server runs in this process and reads this settings object on every request.
    monkeypatch.setattr(settings, "env", "development")
    page = console.page()
    page.goto("/dashboard/sign-in")
    buttons = page.locator("#persona-form button[name=persona]")
    assert buttons.count() == 6  # admin, marketer and till staff of both demo merchants
    assert page.locator("#persona-form").inner_text().count("Till staff") == 2
    screenshot(page, "sign_in_development")
    submit_and_land(page, f"#persona-form button[value='{COFFEE.id}:merchant_admin']")
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION)
    claims = jwt.decode(cookie["value"], options={"verify_signature": False})
    assert (claims["role"], claims["merchant_id"]) == ("merchant_admin", str(COFFEE.id))
    assert cookie["secure"] is False  # development is plain http
    assert cookie["expires"] <= claims["exp"]


def test_behind_an_authenticating_proxy_the_sign_in_page_says_who_is_signed_in(anon, world):
    """oauth2-proxy sends the identity provider's token as Authorization: Bearer on every request."""
    merchant = world.merchant()
    r = anon.get("/dashboard/sign-in", headers=merchant.marketer)
    assert 'id="proxied"' in r.text
    assert "(marketer) by the sign-in in front of this console" in r.text
    assert anon.get("/dashboard/venues", headers=merchant.admin).status_code == 200  # the proxy's token is a session
    assert 'id="proxied"' not in anon.get("/dashboard/sign-in", headers=world.user()).text
