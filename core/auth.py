"""Bearer JWT verification (PyJWT) and the authenticated principal.

The algorithm is pinned by configuration, never read from the token, and HMAC and
public-key algorithms are never accepted by the same deployment. exp, iat, sub, aud and
iss are required and must have the right types, and exp - iat may not exceed
CHECKIN_JWT_MAX_LIFETIME_S.
"""

from __future__ import annotations

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


def verify_token(token: str, settings: Settings) -> Principal:
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
    return principal


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    # PyJWT checks exp/iat when present; their types and the custom claims are ours to check.
    for name in ("exp", "iat"):
        if isinstance(claims.get(name), bool) or not isinstance(claims.get(name), int | float):
            raise Unauthorized(f"claim {name} must be a number", code="invalid_token")
    sub = claims.get("sub")
    # Printable only: sub is stored as the user's id, and PostgreSQL text refuses NUL bytes.
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200 or not sub.isprintable():
        raise Unauthorized("claim sub must be a printable string of 1-200 characters", code="invalid_token")
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
