"""Authentication over HTTP: the pinned JWT algorithm, the required and typed claims, roles on
every endpoint, the refusal of unsafe settings, an RS256 deployment and the `token` command."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from api.app import create_app
from core.auth import Role, verify_token
from core.errors import Unauthorized
from core.settings import DEV_JWT_SECRET, POSITIVE_LIMITS, Settings, weak_secret_reason
from tests.test_errors_and_limits import assert_problem

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "checkin-offers"
ANY_ID = "00000000-0000-4000-8000-000000000000"
DROP = object()  # a claim left out of the token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(settings, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": f"user-{uuid.uuid4().hex[:8]}",
        "role": "app_user",
        "iat": now,
        "exp": now + 600,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


def _hmac_by_hand(claims: dict, secret: bytes, alg: str = "HS256", header: dict | None = None) -> str:
    """HMAC-signed without PyJWT, which refuses a PEM key as a secret and warns on short keys."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = (
        f"{_b64(json.dumps(header or {'alg': alg, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), digest).digest())}"


def _rsa_key() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, pem


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- tokens over HTTP ----------------------------------------------------------------------


def test_a_good_token_is_accepted(http, settings):
    token = jwt.encode(_claims(settings), settings.jwt_secret, algorithm="HS256")
    r = http.get("/v1/me/offers", headers=_bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}


def test_missing_or_malformed_header_is_missing_token(http):
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Token abc"},
    ):
        r = http.get("/v1/me/offers", headers=headers)
        assert_problem(r, 401, "missing_token")
        assert r.headers["www-authenticate"] == "Bearer", headers


def _unsigned(header: dict, claims: dict, signature: str = "") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{signature}"


def _tampered(secret: str, claims: dict) -> str:
    header, _, signature = jwt.encode(claims, secret, algorithm="HS256").split(".")
    return f"{header}.{_b64(json.dumps(claims | {'role': 'platform_admin'}).encode())}.{signature}"


def _header_not_json(secret: str, claims: dict) -> str:
    _, payload, signature = jwt.encode(claims, secret, algorithm="HS256").split(".")
    return f"{_b64(b'nope')}.{payload}.{signature}"


# Each builds a token from (the deployment's HS256 secret, good claims) that must be refused.
FORGERIES = {
    "hs512 with the right secret": lambda secret, c: _hmac_by_hand(c, secret.encode(), "HS512"),
    "hs384 with the right secret": lambda secret, c: _hmac_by_hand(c, secret.encode(), "HS384"),
    "alg none": lambda secret, c: _unsigned({"alg": "none", "typ": "JWT"}, c),
    "alg NONE": lambda secret, c: _unsigned({"alg": "NONE", "typ": "JWT"}, c),
    "alg none with a signature": lambda secret, c: _unsigned(
        {"alg": "none"}, c, jwt.encode(c, secret, algorithm="HS256").split(".")[2]
    ),
    "no alg": lambda secret, c: _hmac_by_hand(c, secret.encode(), header={"typ": "JWT"}),
    "rs256": lambda secret, c: jwt.encode(c, _rsa_key()[0], algorithm="RS256"),
    "es256": lambda secret, c: jwt.encode(c, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
    "hs256 keyed with a public key pem": lambda secret, c: _hmac_by_hand(c, _rsa_key()[1].encode()),
    "hs256 with another secret": lambda secret, c: jwt.encode(
        c, "another-secret-of-at-least-32-bytes!!", algorithm="HS256"
    ),
    "payload changed after signing": _tampered,
    "signature stripped": lambda secret, c: jwt.encode(c, secret, algorithm="HS256").rsplit(".", 1)[0] + ".",
    "two parts": lambda secret, c: jwt.encode(c, secret, algorithm="HS256").rsplit(".", 1)[0],
    "header not json": _header_not_json,
    "garbage": lambda secret, c: "not-a-jwt",
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_forged_and_wrong_algorithm_tokens_are_refused(http, settings, case):
    token = FORGERIES[case](settings.jwt_secret, _claims(settings))
    r = http.get("/v1/me/offers", headers=_bearer(token))
    assert_problem(r, 401, "invalid_token")
    assert r.headers["www-authenticate"] == "Bearer"


def _bad_claims(now: int, leeway: int) -> dict[str, dict]:
    return {
        "no exp": {"exp": DROP},
        "exp a string": {"exp": str(now + 600)},
        "exp a word": {"exp": "tomorrow"},
        "exp a boolean": {"exp": True},
        "exp null": {"exp": None},
        "expired beyond the leeway": {"exp": now - leeway - 30, "iat": now - 3600},
        "no iat": {"iat": DROP},
        "iat a string": {"iat": str(now)},
        "iat in the future beyond the leeway": {"iat": now + leeway + 300},
        "nbf in the future": {"nbf": now + leeway + 300},
        "no sub": {"sub": DROP},
        "sub a number": {"sub": 12345},
        "sub empty": {"sub": ""},
        "sub too long": {"sub": "u" * 201},
        "sub with a NUL byte": {"sub": "user\x00one"},
        "sub with a control character": {"sub": "user\none"},
        "sub in the erasure placeholders' space": {"sub": "erased:0b8f7c52-5d2e-4f8e-9d0a-3f1c2b4a5e6d"},
        "no aud": {"aud": DROP},
        "wrong aud": {"aud": "someone-else"},
        "aud a list without ours": {"aud": ["someone-else", "another"]},
        "no iss": {"iss": DROP},
        "wrong iss": {"iss": "https://evil.example"},
        "iss a number": {"iss": 7},
        "no role": {"role": DROP},
        "unknown role": {"role": "superuser"},
        "role wrong case": {"role": "App_User"},
        "role a list": {"role": ["app_user"]},
        "merchant_admin without merchant_id": {"role": "merchant_admin"},
        "merchant_staff without merchant_id": {"role": "merchant_staff"},
        "marketer without merchant_id": {"role": "marketer"},
        "merchant_id not a uuid": {"role": "merchant_admin", "merchant_id": "shop-1"},
        "merchant_id null": {"role": "merchant_admin", "merchant_id": None},
        "merchant_id a number": {"role": "merchant_staff", "merchant_id": 42},
    }


@pytest.mark.parametrize("case", list(_bad_claims(0, 0)))
def test_missing_or_mistyped_claims_are_refused(http, settings, case):
    overrides = _bad_claims(int(time.time()), settings.jwt_leeway_s)[case]
    path = "/v1/venues" if overrides.get("role", "app_user") != "app_user" else "/v1/me/offers"
    token = _hmac_by_hand(_claims(settings, **overrides), settings.jwt_secret.encode())
    r = http.get(path, headers=_bearer(token))
    assert_problem(r, 401, "invalid_token")
    assert r.headers["www-authenticate"] == "Bearer"


def test_expiry_within_the_leeway_and_an_audience_list_are_accepted(http, settings):
    now = int(time.time())
    for overrides in (
        {"exp": now - settings.jwt_leeway_s // 2, "iat": now - 3600},
        {"aud": ["someone-else", settings.jwt_audience]},
        {"exp": float(now + 600), "iat": float(now)},
    ):
        token = _hmac_by_hand(_claims(settings, **overrides), settings.jwt_secret.encode())
        r = http.get("/v1/me/offers", headers=_bearer(token))
        assert r.status_code == 200, (overrides, r.text)


def test_a_token_living_longer_than_the_maximum_lifetime_is_refused(http, settings):
    now = int(time.time())
    longest = settings.jwt_max_lifetime_s

    def status(iat: int, exp: int) -> int:
        token = _hmac_by_hand(_claims(settings, iat=iat, exp=exp), settings.jwt_secret.encode())
        return http.get("/v1/me/offers", headers=_bearer(token)).status_code

    assert status(now, now + longest) == 200
    assert status(now - 60, now - 60 + longest) == 200
    token = _hmac_by_hand(_claims(settings, iat=now, exp=now + longest + 1), settings.jwt_secret.encode())
    r = http.get("/v1/me/offers", headers=_bearer(token))
    assert_problem(r, 401, "invalid_token")
    assert "lifetime" in r.json()["detail"]
    assert status(now - 3600, now + 365 * 86400) == 401  # a year-long token


def test_the_maximum_lifetime_follows_the_setting(no_key_env):
    settings = Settings(jwt_secret=GOOD_SECRET, jwt_max_lifetime_s=600)
    now = int(time.time())
    assert _verdict(jwt.encode(_claims(settings, exp=now + 600), GOOD_SECRET, algorithm="HS256"), settings) == (
        "accepted"
    )
    assert _verdict(jwt.encode(_claims(settings, exp=now + 601), GOOD_SECRET, algorithm="HS256"), settings) == (
        "invalid_token"
    )


def test_problem_detail_never_echoes_the_token(http, settings):
    token = _hmac_by_hand(_claims(settings), settings.jwt_secret.encode(), "HS512")
    r = http.get("/v1/me/offers", headers=_bearer(token))
    assert_problem(r, 401, "invalid_token")
    assert token not in r.text


# --- roles on every endpoint -----------------------------------------------------------------

ADMIN = {"merchant_admin"}
READERS = {"merchant_admin", "merchant_staff", "marketer"}
ANSWER = {"merchant_admin", "merchant_staff"}
# (method, path, body, the merchant roles allowed): every other role gets 403.
MERCHANT_ENDPOINTS = [
    (
        "POST",
        "/v1/venues",
        {"name": "x", "timezone": "UTC", "geofence": {"type": "Circle", "center": [10, 60], "radius_m": 50}},
        ADMIN,
    ),
    ("GET", "/v1/venues", None, READERS),
    ("GET", f"/v1/venues/{ANY_ID}", None, READERS),
    ("PATCH", f"/v1/venues/{ANY_ID}", {"name": "y"}, ADMIN),
    ("DELETE", f"/v1/venues/{ANY_ID}", None, ADMIN),
    (
        "POST",
        "/v1/campaigns",
        {"name": "c", "venue_ids": [ANY_ID], "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-02-01T00:00:00Z"},
        ADMIN,
    ),
    ("GET", "/v1/campaigns", None, READERS),
    ("GET", f"/v1/campaigns/{ANY_ID}", None, READERS),
    ("PATCH", f"/v1/campaigns/{ANY_ID}", {"name": "d"}, ADMIN),
    (
        "POST",
        f"/v1/campaigns/{ANY_ID}/offers",
        {"title": "t", "description": "d", "terms": "t", "rule": {"type": "every_checkin"}, "total_limit": 1},
        ADMIN,
    ),
    ("POST", f"/v1/campaigns/{ANY_ID}/activate", None, ADMIN),
    ("POST", f"/v1/campaigns/{ANY_ID}/pause", None, ADMIN),
    ("POST", f"/v1/campaigns/{ANY_ID}/end", None, ADMIN),
    ("DELETE", f"/v1/campaigns/{ANY_ID}", None, ADMIN),
    ("GET", f"/v1/campaigns/{ANY_ID}/offers", None, READERS),
    ("GET", f"/v1/offers/{ANY_ID}", None, READERS),
    ("PATCH", f"/v1/offers/{ANY_ID}", {"status": "paused"}, ADMIN),
    ("POST", "/v1/redemptions", {"code": "ABCD-EFGH-JKMN", "venue_id": ANY_ID}, {"merchant_admin", "merchant_staff"}),
    ("POST", f"/v1/redemptions/{ANY_ID}/void", {"reason": "mistake"}, ADMIN),
    ("GET", f"/v1/campaigns/{ANY_ID}/stats", None, {"merchant_admin", "marketer"}),
    ("GET", f"/v1/campaigns/{ANY_ID}/power?lift_pp=2", None, {"merchant_admin", "marketer"}),
    ("GET", "/v1/merchants/me", None, READERS),
    ("GET", f"/v1/codes/{ANY_ID}?venue_id={ANY_ID}", None, {"merchant_admin", "merchant_staff"}),
    ("GET", "/v1/redemptions", None, {"merchant_admin", "merchant_staff"}),
    ("GET", "/v1/checkins", None, ADMIN),
    # Customer voice: admins and staff answer, marketers read (tests/test_conversations.py has the rest).
    ("GET", "/v1/conversations", None, READERS),
    ("GET", f"/v1/conversations/{ANY_ID}", None, READERS),
    ("POST", f"/v1/conversations/{ANY_ID}/messages", {"body": "Sorry about that!"}, ANSWER),
    ("POST", f"/v1/conversations/{ANY_ID}/close", None, ANSWER),
    ("POST", f"/v1/conversations/{ANY_ID}/read", None, ANSWER),
    # Webhooks: admins only (tests/test_webhooks.py has ownership, generated from the routes).
    ("POST", "/v1/webhooks", {"url": "https://hooks.example.com/in", "events": ["offer_unlocked"]}, ADMIN),
    ("GET", "/v1/webhooks", None, ADMIN),
    ("DELETE", f"/v1/webhooks/{ANY_ID}", None, ADMIN),
    ("POST", f"/v1/webhooks/{ANY_ID}/enable", None, ADMIN),
    ("GET", f"/v1/webhooks/{ANY_ID}/deliveries", None, ADMIN),
    ("POST", f"/v1/webhooks/{ANY_ID}/deliveries/{ANY_ID}/redeliver", None, ADMIN),
    ("GET", "/v1/audit", None, ADMIN),
]
APP_ENDPOINTS = [
    ("POST", "/v1/checkins", {"lat": 60, "lon": 10, "accuracy_m": 5, "observed_at": "2030-01-01T00:00:00Z"}),
    ("GET", "/v1/me/offers", None),
    ("GET", "/v1/venues/nearby?lat=60&lon=10&radius_m=100", None),
    ("POST", f"/v1/unlocks/{ANY_ID}/feedback", {"rating": 5}),
    ("PATCH", f"/v1/unlocks/{ANY_ID}/feedback", {"rating": 6}),
    ("POST", f"/v1/unlocks/{ANY_ID}/messages", {"body": "The code did not work"}),
    ("GET", "/v1/me/conversations", None),
    ("POST", f"/v1/me/conversations/{ANY_ID}/read", None),
    ("GET", "/v1/me/export", None),
    ("GET", "/v1/me/export/checkins", None),
    ("DELETE", "/v1/me", None),
]
# Platform admins only (tests/test_erasure.py has the erasure's roles).
PLATFORM_ENDPOINTS = {("POST", "/v1/merchants"), ("POST", "/v1/privacy/erasures")}


def test_every_endpoint_is_in_the_role_tables():
    """A new endpoint must say who may call it here before it ships."""
    from api.main import app

    documented = {
        (method.upper(), re.sub(r"\{[a-z_]+\}", ANY_ID, path))
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    tested = {(e[0], e[1].split("?")[0]) for e in MERCHANT_ENDPOINTS + APP_ENDPOINTS} | PLATFORM_ENDPOINTS
    assert documented == tested


def _call(http, method, path, body, headers):
    return http.request(method, path, json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})


def _endpoint_id(endpoint: tuple) -> str:
    return f"{endpoint[0]} {endpoint[1].replace(ANY_ID, '{id}')}"


@pytest.mark.parametrize("endpoint", MERCHANT_ENDPOINTS, ids=_endpoint_id)
def test_app_users_and_platform_admins_are_forbidden_merchant_endpoints(world, endpoint):
    method, path, body, _ = endpoint
    for role in ("app_user", "platform_admin"):
        r = _call(world.http, method, path, body, world.headers(role))
        assert_problem(r, 403, "forbidden_role")


@pytest.mark.parametrize("endpoint", APP_ENDPOINTS, ids=_endpoint_id)
def test_merchant_roles_and_platform_admins_are_forbidden_app_endpoints(world, endpoint):
    method, path, body = endpoint
    for role in ("merchant_admin", "merchant_staff", "marketer", "platform_admin"):
        r = _call(world.http, method, path, body, world.headers(role, merchant_id=ANY_ID))
        assert_problem(r, 403, "forbidden_role")


@pytest.mark.parametrize("endpoint", MERCHANT_ENDPOINTS, ids=_endpoint_id)
def test_each_merchant_role_gets_exactly_its_endpoints(world, endpoint):
    """An allowed role gets past the role check (a 2xx, 404 or 422, never 403); the others get 403."""
    method, path, body, allowed = endpoint
    m = world.merchant()
    for role, headers in {"merchant_admin": m.admin, "merchant_staff": m.staff, "marketer": m.marketer}.items():
        r = _call(world.http, method, path, body, headers)
        if role in allowed:
            assert r.status_code in (200, 201, 204, 404, 422), (role, r.text)
            assert r.status_code < 300 or r.json()["code"] != "forbidden_role"
        else:
            assert_problem(r, 403, "forbidden_role")


def test_only_platform_admins_create_merchants(world):
    m = world.merchant()
    for headers in (world.user(), m.admin, m.staff, m.marketer):
        r = world.http.post("/v1/merchants", json={"name": "Sneaky"}, headers=headers)
        assert_problem(r, 403, "forbidden_role")
    r = world.http.post("/v1/merchants", json={"name": "Bakeriet"}, headers=world.headers("platform_admin"))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "Bakeriet"
    uuid.UUID(r.json()["id"])


def test_only_merchant_admins_write_venues_while_staff_and_marketers_read(world):
    m = world.merchant()
    venue = world.venue(m)
    for headers in (m.staff, m.marketer):
        body = {"name": "x", "timezone": "UTC", "geofence": {"type": "Circle", "center": [1, 1], "radius_m": 50}}
        assert_problem(world.http.post("/v1/venues", json=body, headers=headers), 403, "forbidden_role")
        assert_problem(
            world.http.patch(f"/v1/venues/{venue['id']}", json={"name": "z"}, headers=headers), 403, "forbidden_role"
        )
        assert_problem(world.http.delete(f"/v1/venues/{venue['id']}", headers=headers), 403, "forbidden_role")
        r = world.http.get(f"/v1/venues/{venue['id']}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["name"] == venue["name"]
        r = world.http.get("/v1/venues", headers=headers)
        assert [v["id"] for v in r.json()["items"]] == [venue["id"]]


# --- settings ------------------------------------------------------------------------------


@pytest.fixture
def no_key_env(monkeypatch):
    """Settings built from arguments only, not from the test suite's CHECKIN_JWT_* variables."""
    for name in (
        "CHECKIN_JWT_SECRET",
        "CHECKIN_JWT_PUBLIC_KEY",
        "CHECKIN_JWKS_URL",
        "CHECKIN_JWT_ALGORITHM",
        "CHECKIN_ENV",
    ):
        monkeypatch.delenv(name, raising=False)


def test_short_hs256_secrets_are_refused(no_key_env):
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(jwt_secret="x" * 31)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(jwt_secret="ø" * 15)  # 30 bytes in UTF-8
    assert Settings(jwt_secret="x" * 32).algorithm == "HS256"


@pytest.mark.parametrize("env", ["test", "production"])
def test_outside_development_the_dev_secret_and_a_missing_key_are_refused(no_key_env, env):
    with pytest.raises(ValidationError, match="development JWT secret"):
        Settings(env=env, jwt_secret=DEV_JWT_SECRET)
    with pytest.raises(ValidationError, match=f"CHECKIN_ENV={env} needs"):
        Settings(env=env)


def test_development_alone_falls_back_to_the_dev_secret(no_key_env):
    assert Settings(env="development").jwt_secret == DEV_JWT_SECRET
    assert Settings(env="production", jwt_secret="a-real-production-secret-of-32-bytes+").algorithm == "HS256"


def test_production_reads_the_refusal_from_the_environment(no_key_env, monkeypatch):
    monkeypatch.setenv("CHECKIN_ENV", "production")
    with pytest.raises(ValidationError, match="CHECKIN_ENV=production needs"):
        Settings()
    monkeypatch.setenv("CHECKIN_JWT_SECRET", DEV_JWT_SECRET)
    with pytest.raises(ValidationError, match="development JWT secret"):
        Settings()


def test_hmac_and_public_key_algorithms_never_mix(no_key_env):
    _, pem = _rsa_key()
    with pytest.raises(ValidationError, match="not both"):
        Settings(jwt_secret="x" * 40, jwt_public_key=pem)
    with pytest.raises(ValidationError, match="must be HS256"):
        Settings(jwt_secret="x" * 40, jwt_algorithm="RS256")
    with pytest.raises(ValidationError, match="asymmetric"):
        Settings(jwt_public_key=pem, jwt_algorithm="HS256")
    assert Settings(jwt_public_key=pem).algorithm == "RS256"


def test_a_public_key_that_does_not_fit_the_algorithm_is_refused(no_key_env):
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValidationError, match="not a RS256 key"):
        Settings(jwt_public_key=ec_pem)  # RS256 by default
    with pytest.raises(ValidationError, match="not a RS256 key"):
        Settings(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----")
    assert Settings(jwt_public_key=ec_pem, jwt_algorithm="ES256").algorithm == "ES256"


GOOD_SECRET = "a-real-production-secret-of-32-bytes+"


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("x" * 40, "fewer than 16 distinct characters"),
        ("0123456789" * 4, "fewer than 16 distinct characters"),
        ("0123456789abcdef" * 3, "one shorter string repeated"),
        ("Tr0ub4dor&3-correct-horse" * 2, "one shorter string repeated"),
    ],
)
@pytest.mark.parametrize("env", ["test", "production"])
def test_outside_development_a_guessable_secret_is_refused(no_key_env, env, secret, reason):
    with pytest.raises(ValidationError, match=reason):
        Settings(env=env, jwt_secret=secret)
    assert Settings(env="development", jwt_secret=secret).jwt_secret == secret  # a developer's own machine
    assert weak_secret_reason(GOOD_SECRET) is None
    assert weak_secret_reason(GOOD_SECRET + "x") is None  # repeats inside are fine; only a whole repetition is not


@pytest.mark.parametrize(
    ("env", "url", "allowed"),
    [
        ("production", "https://idp.example.com/.well-known/jwks.json", True),
        ("production", "http://idp.example.com/.well-known/jwks.json", False),
        ("production", "http://127.0.0.1:8080/jwks.json", False),
        ("production", "https:///jwks.json", False),
        ("production", "ftp://idp.example.com/jwks.json", False),
        ("test", "http://127.0.0.1:8080/jwks.json", True),
        ("test", "http://localhost/jwks.json", True),
        ("test", "http://idp.example.com/jwks.json", False),
        ("development", "http://idp.example.com/jwks.json", True),
    ],
)
def test_a_jwks_url_must_be_https_but_loopback_http_in_test(no_key_env, env, url, allowed):
    key = {"pseudonym_key": GOOD_SECRET + "/pseudonyms"}  # production without an HS256 secret needs one
    if allowed:
        assert Settings(env=env, jwks_url=url, **key).jwks_url == url
    else:
        with pytest.raises(ValidationError, match="CHECKIN_JWKS_URL must be https"):
            Settings(env=env, jwks_url=url, **key)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_leeway_s": 301}, "CHECKIN_JWT_LEEWAY_S must be between 0 and 300"),
        ({"jwt_leeway_s": -1}, "CHECKIN_JWT_LEEWAY_S must be between 0 and 300"),
        ({"jwt_audience": ""}, "CHECKIN_JWT_AUDIENCE must not be empty"),
        ({"jwt_issuer": "  "}, "CHECKIN_JWT_ISSUER must not be empty"),
        ({"min_accuracy_m": 100.0}, "CHECKIN_MIN_ACCURACY_M must be at least 0 and below"),
        ({"min_accuracy_m": -1.0}, "CHECKIN_MIN_ACCURACY_M must be at least 0 and below"),
        *(
            pytest.param({name: value}, f"CHECKIN_{name.upper()} must be positive", id=f"{name}={value}")
            for name in POSITIVE_LIMITS
            for value in (0, -1)
        ),
    ],
)
def test_outside_development_unsafe_limits_are_refused(no_key_env, overrides, message):
    with pytest.raises(ValidationError, match=message):
        Settings(env="production", jwt_secret=GOOD_SECRET, **overrides)
    Settings(env="development", jwt_secret=GOOD_SECRET, **overrides)  # refused only outside development


def test_a_leeway_at_its_edges_is_accepted(no_key_env):
    for leeway in (0, 300):
        assert Settings(env="production", jwt_secret=GOOD_SECRET, jwt_leeway_s=leeway).jwt_leeway_s == leeway


def test_the_longest_redemption_delay_must_be_shorter_than_the_memory_of_misses(no_key_env):
    with pytest.raises(ValidationError, match="MAX_DELAY_S must be shorter"):
        Settings(redemption_max_delay_s=900, redemption_failure_memory_s=900)
    for field in ("redemption_first_delay_s", "redemption_merchant_failures_per_10min"):
        with pytest.raises(ValidationError, match=field):
            Settings(**{field: 0})


def test_public_docs_default_to_off_in_production_alone(no_key_env):
    assert Settings(env="development").docs_served
    assert Settings(env="test", jwt_secret=GOOD_SECRET).docs_served
    assert not Settings(env="production", jwt_secret=GOOD_SECRET).docs_served
    assert Settings(env="production", jwt_secret=GOOD_SECRET, public_docs=True).docs_served
    assert not Settings(env="test", jwt_secret=GOOD_SECRET, public_docs=False).docs_served


def test_without_public_docs_the_docs_and_the_document_are_not_served(http, settings, monkeypatch):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert http.get(path).status_code == 200, path  # the test service serves them
    monkeypatch.setattr(settings, "public_docs", False)

    async def statuses() -> dict[str, int]:
        # No lifespan: it would close the engine and Redis client this process's service shares.
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://docs.test") as client:
            return {
                path: (await client.get(path)).status_code for path in ("/docs", "/redoc", "/openapi.json", "/healthz")
            }

    assert asyncio.run(statuses()) == {"/docs": 404, "/redoc": 404, "/openapi.json": 404, "/healthz": 200}


def _verdict(token: str, settings: Settings) -> str:
    try:
        verify_token(token, settings)
    except Unauthorized as exc:
        return exc.code
    return "accepted"


def test_an_rs256_deployment_accepts_rs256_and_refuses_key_confusion(no_key_env):
    key, pem = _rsa_key()
    settings = Settings(jwt_public_key=pem, jwt_algorithm="RS256")
    merchant = str(uuid.uuid4())
    claims = _claims(settings, sub="alice", role="merchant_admin", merchant_id=merchant)

    principal = verify_token(jwt.encode(claims, key, algorithm="RS256"), settings)
    assert (principal.sub, principal.role, str(principal.merchant_id)) == ("alice", Role.MERCHANT_ADMIN, merchant)

    other_key, _ = _rsa_key()
    refused = {
        "hs256 keyed with the public key": _hmac_by_hand(claims, pem.encode()),
        "hs256 keyed with the public key, no trailing newline": _hmac_by_hand(claims, pem.strip().encode()),
        "rs256 signed by another key": jwt.encode(claims, other_key, algorithm="RS256"),
        "rs512 with the right key": jwt.encode(claims, key, algorithm="RS512"),
        "ps256 with the right key": jwt.encode(claims, key, algorithm="PS256"),
        "alg none": _unsigned({"alg": "none"}, claims),
        "rs256 expired": jwt.encode(claims | {"exp": int(time.time()) - 3600}, key, algorithm="RS256"),
        "rs256 wrong aud": jwt.encode(claims | {"aud": "elsewhere"}, key, algorithm="RS256"),
    }
    assert {case: _verdict(token, settings) for case, token in refused.items()} == dict.fromkeys(
        refused, "invalid_token"
    )


# --- the token command -----------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), "token", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_the_token_command_prints_a_token_that_verifies(world, settings):
    m = world.merchant()
    done = _cli("--role", "merchant_admin", "--merchant-id", m.id, "--sub", "alice")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    principal = verify_token(token, settings)
    assert (principal.sub, principal.role, str(principal.merchant_id)) == ("alice", Role.MERCHANT_ADMIN, m.id)

    venue = world.venue(m)
    r = world.http.get("/v1/venues", headers=_bearer(token))
    assert r.status_code == 200, r.text
    assert [v["id"] for v in r.json()["items"]] == [venue["id"]]


def test_the_token_command_refuses_a_merchant_role_without_a_merchant():
    done = _cli("--role", "merchant_staff", "--sub", "bob")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "merchant" in done.stderr


# --- authentication before the body ----------------------------------------------------------------


def _operations_with_a_body() -> list[tuple[str, str]]:
    """Every API operation that takes a body, from the app's own routes (through its document), so a
    new endpoint is covered without touching this test."""
    from api.main import app

    found = [
        (method.upper(), re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path))
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if path.startswith("/v1/") and "requestBody" in operation
    ]
    assert ("POST", "/v1/checkins") in found and len(found) >= 10, found
    return found


MALFORMED = {"content": b'{"name": "unterminated', "headers": {"Content-Type": "application/json"}}


def test_an_anonymous_or_badly_signed_request_is_401_before_its_body_is_read(world, settings):
    forged = _hmac_by_hand(_claims(settings), b"not-the-secret-of-this-deployment-0123456789")
    for method, path in _operations_with_a_body():
        r = world.http.request(method, path, content=MALFORMED["content"], headers=MALFORMED["headers"])
        assert_problem(r, 401, "missing_token")
        assert r.headers["www-authenticate"] == "Bearer"
        r = world.http.request(
            method, path, content=MALFORMED["content"], headers={**MALFORMED["headers"], **_bearer(forged)}
        )
        assert_problem(r, 401, "invalid_token")


def test_a_wrong_role_is_403_before_the_body_is_read_and_a_right_role_reads_it(world):
    m = world.merchant()
    roles = {
        "app_user": world.user(),
        "platform_admin": world.headers("platform_admin"),
        "merchant_admin": m.admin,
        "merchant_staff": m.staff,
        "marketer": m.marketer,
    }
    for method, path in _operations_with_a_body():
        outcomes = {}
        for role, headers in roles.items():
            r = world.http.request(
                method, path, content=MALFORMED["content"], headers={**MALFORMED["headers"], **headers}
            )
            if r.status_code == 403:
                assert_problem(r, 403, "forbidden_role")
            else:  # an admitted role: now the body is read, and it is not JSON
                problem = assert_problem(r, 422, "validation_error")
                assert [e["code"] for e in problem["errors"]] == ["json_invalid"], (path, role, problem)
            outcomes[role] = r.status_code
        assert 403 in outcomes.values() and 422 in outcomes.values(), (method, path, outcomes)


def test_the_token_is_verified_once_per_request(world, monkeypatch):
    import api.deps

    calls = []
    real = api.deps.verify_token

    def counting(token, settings):
        calls.append(token)
        return real(token, settings)

    monkeypatch.setattr(api.deps, "verify_token", counting)
    m = world.merchant()
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    for method, path, body in (
        ("POST", "/v1/venues", {"name": "Once", "geofence": circle}),  # checked before the body
        ("GET", "/v1/venues", None),  # no body: checked by the dependency
    ):
        calls.clear()
        r = world.http.request(method, path, json=body, headers=m.admin)
        assert r.status_code in (200, 201), r.text
        assert len(calls) == 1, (method, path, len(calls))
