"""Bearer JWT verification (PyJWT) and the authenticated principal.

The algorithm is pinned by configuration, never read from the token, and HMAC and
public-key algorithms are never accepted by the same deployment. exp, iat, sub, aud and
iss are required and must have the right types, and exp - iat may not exceed
CHECKIN_JWT_MAX_LIFETIME_S.

A token that passed every check is remembered (by its SHA-256, with the settings it was checked
against) until its exp, and never longer than VERIFIED_FOR_S: a client sends the same token with
request after request, and checking its signature again costs more than the rest of the route. So a
token is refused the moment it expires, cached or not; a revoked signing key (a JWKS rotation) stops
cached tokens within VERIFIED_FOR_S. A token that fails a check is never remembered.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import jwt
from jwt.algorithms import AllowedPublicKeys

from core.errors import Unauthorized
from core.settings import Settings

REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
# An erased customer's rows live on under "erased:<uuid>" (offers/privacy/erasure.py): no token may be
# one of them, so that nobody can read or add to an erased record.
ERASED_SUB_PREFIX = "erased:"


class Role(StrEnum):
    APP_USER = "app_user"
    MERCHANT_STAFF = "merchant_staff"
    MERCHANT_ADMIN = "merchant_admin"
    MARKETER = "marketer"
    PLATFORM_ADMIN = "platform_admin"


MERCHANT_ROLES = {Role.MERCHANT_STAFF, Role.MERCHANT_ADMIN, Role.MARKETER}
ROLE_NAMES = frozenset(role.value for role in Role)

# What PyJWT verifies with: an HMAC secret's bytes, or a parsed public key.
VerificationKey = AllowedPublicKeys | bytes


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    merchant_id: uuid.UUID | None


@lru_cache
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300)


@lru_cache
def _prepared_key(algorithm: str, key: str) -> VerificationKey:
    # Parsing a PEM key costs more than verifying a signature with it: do it once.
    prepared: VerificationKey = jwt.algorithms.get_default_algorithms()[algorithm].prepare_key(key)
    return prepared


def _verification_key(token: str, settings: Settings) -> VerificationKey:
    secret_or_key = settings.jwt_secret or settings.jwt_public_key
    if secret_or_key:
        return _prepared_key(settings.algorithm, secret_or_key)
    if not settings.jwks_url:  # Settings refuses to start without one of the three
        raise RuntimeError("no JWT secret, public key or JWKS URL is configured")
    key: VerificationKey = _jwks_client(settings.jwks_url).get_signing_key_from_jwt(token).key
    return key


# How long a verified token is taken on trust at most, and how many are kept (the oldest go first).
VERIFIED_FOR_S = 60.0
VERIFIED_MAX = 4096

# sha256(token) -> (the settings it was checked against, valid until (time.time()), its principal).
_verified: dict[bytes, tuple[tuple[object, ...], float, Principal]] = {}
_verified_lock = threading.Lock()  # a JWKS deployment verifies in the thread pool


def _checked_against(settings: Settings) -> tuple[object, ...]:
    """What a verdict depends on: another key, algorithm, audience, issuer or limit, another verdict."""
    return (
        settings.algorithm,
        settings.jwt_secret,
        settings.jwt_public_key,
        settings.jwks_url,
        settings.jwt_audience,
        settings.jwt_issuer,
        settings.jwt_leeway_s,
        settings.jwt_max_lifetime_s,
    )


def verify_token(token: str, settings: Settings) -> Principal:
    """The principal of a token that passes every check, from memory when it did already."""
    principal = remembered_principal(token, settings)
    if principal is not None:
        return principal
    now = time.time()
    principal, expires_at = _verify(token, settings)
    with _verified_lock:
        if len(_verified) >= VERIFIED_MAX:
            del _verified[next(iter(_verified))]  # dicts keep insertion order: the oldest
        _verified[_verified_digest(token)] = (
            _checked_against(settings),
            min(expires_at, now + VERIFIED_FOR_S),
            principal,
        )
    return principal


def remembered_principal(token: str, settings: Settings) -> Principal | None:
    """The principal of a token verified against these settings less than VERIFIED_FOR_S ago and not
    expired since; None otherwise (then verify_token checks it)."""
    remembered = _verified.get(_verified_digest(token))
    if remembered is None or remembered[0] != _checked_against(settings) or time.time() >= remembered[1]:
        return None
    return remembered[2]


def _verified_digest(token: str) -> bytes:
    # Not the token itself: what is kept in memory should not be a bearer credential.
    return hashlib.sha256(token.encode()).digest()


def forget_verified_tokens() -> None:
    with _verified_lock:
        _verified.clear()


def _verify(token: str, settings: Settings) -> tuple[Principal, float]:
    """The principal and the exp of a token that passes every check; Unauthorized otherwise."""
    try:
        claims = jwt.decode(
            token,
            key=_verification_key(token, settings),
            algorithms=[settings.algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": REQUIRED_CLAIMS, "verify_signature": True},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from exc
    principal = principal_from_claims(claims)  # checks that exp and iat are numbers
    # A stolen long-lived token stays useful for its whole life: cap it, whoever issued it.
    if claims["exp"] - claims["iat"] > settings.jwt_max_lifetime_s:
        raise Unauthorized(
            f"token lifetime (exp - iat) exceeds {settings.jwt_max_lifetime_s} seconds", code="invalid_token"
        )
    return principal, float(claims["exp"])


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    # PyJWT checks exp/iat when present; their types and the custom claims are ours to check.
    for name in ("exp", "iat"):
        if isinstance(claims.get(name), bool) or not isinstance(claims.get(name), int | float):
            raise Unauthorized(f"claim {name} must be a number", code="invalid_token")
    sub = claims.get("sub")
    # Printable only: sub is stored as the user's id, and PostgreSQL text refuses NUL bytes.
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200 or not sub.isprintable():
        raise Unauthorized("claim sub must be a printable string of 1-200 characters", code="invalid_token")
    if sub.startswith(ERASED_SUB_PREFIX):
        raise Unauthorized(f"claim sub may not start with {ERASED_SUB_PREFIX}", code="invalid_token")
    role_name = claims.get("role")
    if not isinstance(role_name, str) or role_name not in ROLE_NAMES:
        raise Unauthorized("claim role is missing or unknown", code="invalid_token")
    role = Role(role_name)
    merchant_id = None
    if role in MERCHANT_ROLES:
        try:
            merchant_id = uuid.UUID(str(claims.get("merchant_id")))
        except ValueError:
            raise Unauthorized(f"role {role} needs a merchant_id claim (a UUID)", code="invalid_token") from None
    return Principal(sub=sub, role=role, merchant_id=merchant_id)


def mint_token(
    settings: Settings, *, sub: str, role: Role | str, merchant_id: str | None = None, ttl_s: int = 3600
) -> str:
    """A development token signed with the HS256 secret (refused when none is configured)."""
    if not settings.jwt_secret:
        raise RuntimeError("tokens can be minted only with an HS256 secret (CHECKIN_JWT_SECRET)")
    role = Role(role)
    now = int(time.time())
    claims = {
        "sub": sub,
        "role": str(role),
        "iat": now,
        "exp": now + ttl_s,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
    }
    if role in MERCHANT_ROLES and not merchant_id:
        raise ValueError(f"role {role} needs a merchant id")  # the token would be refused
    if merchant_id:
        claims["merchant_id"] = str(uuid.UUID(str(merchant_id)))
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
