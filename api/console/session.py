"""Who is signed in to the console, and the CSRF token of their forms.

A session is the API's own JWT, kept in an HttpOnly cookie that never outlives the token,
or sent as `Authorization: Bearer` by an authenticating proxy in front. Either way it is
verified exactly as the API verifies it, on every request.

CSRF: every state-changing form carries `csrf_token`, an HMAC of the session's token under a
key of this process's settings (the synchronizer-token pattern without server state), so a
page on another site cannot post on the user's behalf, cookie or proxy alike.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from api.deps import SettingsDep
from core.auth import Principal, Role, verify_token
from core.errors import Unauthorized
from core.settings import Settings

SESSION_COOKIE = "checkin_session"
CONSOLE_ROLES = frozenset({Role.MERCHANT_ADMIN, Role.MARKETER, Role.MERCHANT_STAFF})


class SignInRequired(Exception):
    """Answered with a redirect to the sign-in page (see api/console/pages.py)."""


class CsrfRefused(Exception):
    """Answered with a 403 page: the form did not carry this session's CSRF token."""


def session_token(request: Request) -> str | None:
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and bearer.strip():
        return bearer.strip()
    return request.cookies.get(SESSION_COOKIE) or None


async def console_user(request: Request, settings: SettingsDep) -> Principal:
    """The signed-in merchant user; anyone else (no token, a bad one, an app user, a platform
    admin) is sent to sign in."""
    token = session_token(request)
    if token is None:
        raise SignInRequired
    try:
        principal = verify_token(token, settings)
    except Unauthorized:
        raise SignInRequired from None
    if principal.role not in CONSOLE_ROLES:
        raise SignInRequired
    request.state.csrf_token = csrf_token(token, settings)
    return principal


ConsoleUser = Annotated[Principal, Depends(console_user)]


def csrf_token(session: str, settings: Settings) -> str:
    return hmac.new(_csrf_key(settings), session.encode(), hashlib.sha256).hexdigest()


def _csrf_key(settings: Settings) -> bytes:
    # Derived from the verification material: the same on every worker, never the raw secret.
    material = settings.jwt_secret or settings.jwt_public_key or settings.jwks_url or ""
    return hashlib.sha256(b"checkin-offers console csrf\0" + material.encode()).digest()


async def check_csrf(request: Request, settings: Settings) -> None:
    """Refuse a state-changing request whose form field or X-CSRF-Token header is not this
    session's token."""
    token = session_token(request)
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        field = form.get("csrf_token")
        sent = field if isinstance(field, str) else None
    # Bytes: compare_digest refuses str with non-ASCII characters, and a forged field may have them.
    if token is None or sent is None or not hmac.compare_digest(sent.encode(), csrf_token(token, settings).encode()):
        raise CsrfRefused
