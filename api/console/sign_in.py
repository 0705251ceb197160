"""Signing in to the console with a token, signing out, and the demo personas of development.

The session is the API's own JWT in an HttpOnly cookie (see api/console/session.py): signing in
checks the token exactly as the API would and stores it, for no longer than the token lives.
There is no password here: the identity provider issues tokens, and in production an
authenticating proxy (oauth2-proxy) usually sends them as `Authorization: Bearer` instead.

Login CSRF: the sign-in form has no session yet, so session.check_csrf cannot guard it. Without a
guard, a page on another site could post the attacker's own token and sign the victim in as the
attacker, who would then see whatever the victim types into "their" console. The form therefore
carries a pre-session token: a signed, short-lived random value, set as a SameSite=Strict
HttpOnly cookie when the form is shown and repeated in a hidden field; the POST must carry both,
equal, signed by this service and not expired. Another site can neither read the cookie nor make
the browser send it with a cross-site POST, and a POST the browser marks `Sec-Fetch-Site:
cross-site` is refused outright. The signature bounds the value's age and ties it to this service
(a sibling subdomain that plants a cookie still needs a value issued here); its key is derived from
the token verification material, which with a public key or JWKS is public, so there the guard
rests on the unreadable SameSite=Strict cookie alone, which is the part that matters.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.pages import render
from api.console.session import CONSOLE_ROLES, SESSION_COOKIE, check_csrf, session_token
from api.deps import SettingsDep
from checkin_offers.demo_merchants import MERCHANTS
from core.auth import Principal, Role, mint_token, verify_token
from core.errors import Unauthorized
from core.settings import Settings

router = APIRouter(prefix="/dashboard", include_in_schema=False)

SIGN_IN_PATH = "/dashboard/sign-in"
SIGN_IN_COOKIE = "checkin_sign_in"  # the pre-session (login CSRF) value, only ever sent to SIGN_IN_PATH
SIGN_IN_FORM_TTL_S = 3600  # a form left open longer than this must be reloaded
SIGN_IN_FORM_REUSE_S = 600  # a still-valid value with this much left is reused, so two open tabs both work
PERSONA_TOKEN_TTL_S = 8 * 3600  # a working day of clicking around the demo
# Browsers drop a cookie over 4096 bytes (name and attributes included) without a word.
MAX_COOKIE_TOKEN = 3800
TOO_LARGE = (
    "This token is too large to keep in a browser cookie. Put the console behind an authenticating proxy "
    "that sends it as Authorization: Bearer (see the README's oauth2-proxy deployment)."
)
EXPIRED = "This token has expired: get a new one from your identity provider."
REFUSED_FORM = "This sign-in form expired or was not sent from this site. It has been reloaded: please try again."
ROLE_LABELS = {Role.MERCHANT_ADMIN: "Admin", Role.MARKETER: "Marketer", Role.MERCHANT_STAFF: "Till staff"}


# --------------------------------------------------------------------------- login CSRF


def _sign_in_key(settings: Settings) -> bytes:
    # Derived from the verification material, like the session's CSRF key but under its own label.
    material = settings.jwt_secret or settings.jwt_public_key or settings.jwks_url or ""
    return hashlib.sha256(b"checkin-offers console sign-in form\0" + material.encode()).digest()


def _signature(payload: str, settings: Settings) -> str:
    return hmac.new(_sign_in_key(settings), payload.encode(), hashlib.sha256).hexdigest()


def new_form_token(settings: Settings, now: float) -> str:
    """`issued.nonce.signature`: the value of the pre-session cookie and of the hidden field."""
    payload = f"{int(now)}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_signature(payload, settings)}"


def form_token_age(value: str | None, settings: Settings, now: float) -> float | None:
    """Seconds since the value was issued, or None when it is malformed, forged or expired."""
    issued, _, rest = (value or "").partition(".")
    nonce, _, signature = rest.partition(".")
    if not (issued.isdigit() and nonce and signature):
        return None
    if not hmac.compare_digest(signature.encode(), _signature(f"{issued}.{nonce}", settings).encode()):
        return None
    age = now - int(issued)
    return age if -60 <= age <= SIGN_IN_FORM_TTL_S else None


def sign_in_form_is_ours(request: Request, field: str | None, settings: Settings) -> bool:
    """The POST came from our sign-in form, in this browser, recently."""
    if request.headers.get("sec-fetch-site") == "cross-site":  # browsers say so; cheap to believe
        return False
    cookie = request.cookies.get(SIGN_IN_COOKIE)
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
    if cookie is None or field is None or not hmac.compare_digest(cookie.encode(), field.encode()):
        return False
    return form_token_age(cookie, settings, time.time()) is not None


# --------------------------------------------------------------------------- demo personas


@dataclass(frozen=True)
class Persona:
    key: str  # the button's value
    merchant_name: str
    merchant_id: uuid.UUID
    role: Role
    label: str
    sub: str


def demo_personas() -> list[Persona]:
    """An admin, a marketer and a till member of staff for each demo merchant (fixed ids, so the
    tokens match the data `make run` seeds)."""
    personas = []
    for merchant in MERCHANTS:
        slug = re.sub(r"[^a-z0-9]+", "-", merchant.name.lower()).strip("-")
        for role, label in ROLE_LABELS.items():
            sub = f"demo-{role.value.replace('_', '-')}@{slug}"
            personas.append(Persona(f"{merchant.id}:{role.value}", merchant.name, merchant.id, role, label, sub))
    return personas


def personas_offered(settings: Settings) -> bool:
    return settings.env == "development"


# --------------------------------------------------------------------------- pages


def _secure(settings: Settings) -> bool:
    # Development is plain http on loopback; everywhere else the console is served over https.
    return settings.env != "development"


def _sign_in_page(
    request: Request, settings: Settings, *, status_code: int = 200, error: str | None = None
) -> HTMLResponse:
    """The form, with a pre-session value reused from the cookie while it has time left."""
    now = time.time()
    value = request.cookies.get(SIGN_IN_COOKIE)
    age = form_token_age(value, settings, now)
    if value is None or age is None or age > SIGN_IN_FORM_TTL_S - SIGN_IN_FORM_REUSE_S:
        value = new_form_token(settings, now)
    personas = demo_personas() if personas_offered(settings) else []
    merchants: dict[str, list[Persona]] = {}
    for persona in personas:
        merchants.setdefault(persona.merchant_name, []).append(persona)
    response = render(
        request,
        "sign_in.html",
        None,
        status_code,
        csrf_token=value,
        error=error,
        persona_merchants=merchants,
        proxied=_proxied_principal(request, settings),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        value,
        max_age=SIGN_IN_FORM_TTL_S,
        path=SIGN_IN_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(settings),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _proxied_principal(request: Request, settings: Settings) -> Principal | None:
    """Who an authenticating proxy in front (oauth2-proxy) already signed in, if anyone: signing
    in or out here changes nothing for them, and the page says so."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not bearer.strip():
        return None
    try:
        principal = verify_token(bearer.strip(), settings)
    except Unauthorized:
        return None
    return principal if principal.role in CONSOLE_ROLES else None


def _session_seconds(token: str) -> int:
    """How long the session cookie may live: until the (verified) token's exp, rounded down."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})  # verified just before
    exp: float = claims["exp"]  # a number: principal_from_claims checked it
    return math.floor(exp - time.time())


def _signed_in(token: str, max_age: int, settings: Settings) -> Response:
    """Redirect to the console with the session cookie set, living no longer than the token."""
    response = RedirectResponse("/dashboard/", 303)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="lax", secure=_secure(settings)
    )
    response.delete_cookie(
        SIGN_IN_COOKIE, path=SIGN_IN_PATH, httponly=True, samesite="strict", secure=_secure(settings)
    )
    return response


def refusal(exc: Unauthorized) -> str:
    """Why a token is refused, in words for the person who pasted it."""
    cause = exc.__cause__
    if isinstance(cause, jwt.ExpiredSignatureError):
        return EXPIRED
    if isinstance(cause, jwt.InvalidSignatureError):
        return "This token's signature does not match this service's key: it was issued for another service."
    if isinstance(cause, jwt.DecodeError):
        return "This is not a JWT: paste the whole token, three base64url parts separated by dots."
    return f"This token is not accepted: {exc.detail.removeprefix('invalid token: ')}."


def _form_field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _pasted_token(raw: str | None) -> str:
    token = (raw or "").strip()
    if token[:7].lower() == "bearer ":  # copied together with its header
        token = token[7:].strip()
    return token


@router.get("/sign-in")
async def sign_in_form(request: Request, settings: SettingsDep) -> Response:
    return _sign_in_page(request, settings)


@router.post("/sign-in")
async def sign_in(request: Request, settings: SettingsDep) -> Response:
    form = await request.form()
    if not sign_in_form_is_ours(request, _form_field(form, "csrf_token"), settings):
        return _sign_in_page(request, settings, status_code=403, error=REFUSED_FORM)
    token = _pasted_token(_form_field(form, "token"))
    if not token:
        return _sign_in_page(request, settings, status_code=401, error="Paste a token to sign in.")
    try:
        principal = verify_token(token, settings)
    except Unauthorized as exc:
        return _sign_in_page(request, settings, status_code=401, error=refusal(exc))
    if principal.role not in CONSOLE_ROLES:
        role = principal.role.value.replace("_", " ")
        return _sign_in_page(
            request,
            settings,
            status_code=403,
            error=f"This token is for the role {role}. The console is for merchants' admins, marketers and till staff.",
        )
    if len(token) > MAX_COOKIE_TOKEN:
        return _sign_in_page(request, settings, status_code=401, error=TOO_LARGE)
    max_age = _session_seconds(token)
    if max_age <= 0:  # accepted within the clock leeway, but there is no time left for a session
        return _sign_in_page(request, settings, status_code=401, error=EXPIRED)
    return _signed_in(token, max_age, settings)


@router.post("/sign-in/persona")
async def sign_in_as_persona(request: Request, settings: SettingsDep) -> Response:
    """One click, one demo persona: development only."""
    if not personas_offered(settings):
        return _sign_in_page(
            request, settings, status_code=404, error="Demo personas exist only in development. Paste a token."
        )
    form = await request.form()
    if not sign_in_form_is_ours(request, _form_field(form, "csrf_token"), settings):
        return _sign_in_page(request, settings, status_code=403, error=REFUSED_FORM)
    chosen = _form_field(form, "persona")
    persona = next((p for p in demo_personas() if p.key == chosen), None)
    if persona is None:
        return _sign_in_page(request, settings, status_code=400, error="Choose one of the demo personas.")
    try:
        token = mint_token(
            settings,
            sub=persona.sub,
            role=persona.role,
            merchant_id=str(persona.merchant_id),
            ttl_s=PERSONA_TOKEN_TTL_S,
        )
    except RuntimeError as exc:  # development with a public key or JWKS: nothing to sign with here
        return _sign_in_page(request, settings, status_code=400, error=str(exc))
    return _signed_in(token, _session_seconds(token), settings)


@router.post("/sign-out")
async def sign_out(request: Request, settings: SettingsDep) -> Response:
    """Clears the session cookie. A live session must send its CSRF token, so another site cannot
    sign the user out; a cookie that no longer verifies is cleared without one."""
    token = session_token(request)
    if token is not None and _verifies(token, settings):
        await check_csrf(request, settings)
    response = RedirectResponse(SIGN_IN_PATH, 303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(settings))
    return response


def _verifies(token: str, settings: Settings) -> bool:
    try:
        return verify_token(token, settings).role in CONSOLE_ROLES
    except Unauthorized:
        return False
