"""Configuration: one pydantic-settings class, every variable prefixed CHECKIN_.

Unsafe defaults (the development JWT secret, a short secret, no verification key)
are refused outside development, so a production deploy cannot start half-configured.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import jwt
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # 42 bytes, refused outside development
ASYMMETRIC_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKIN_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/checkin_offers"
    redis_url: str = "redis://127.0.0.1:6379/0"
    db_pool_size: int = 4  # PostgreSQL throughput falls beyond 4-8 concurrent writers
    redis_timeout_s: float = 0.05  # a slow Redis must not hang a check-in

    jwt_secret: str | None = None  # HS256, development and tests
    jwt_public_key: str | None = None  # PEM, RS256/ES256 in production
    jwks_url: str | None = None
    jwt_algorithm: str | None = None  # pinned; when unset, HS256 with a secret, else RS256
    jwt_audience: str = "checkin-offers"
    jwt_issuer: str = "checkin-offers"
    jwt_leeway_s: int = 30

    max_body_bytes: int = 64 * 1024
    map_tile_url: str | None = None  # console maps: tiles drawn under fences when set, else a plain background

    # Check-in plausibility.
    max_accuracy_m: float = 100.0
    max_fix_age_s: float = 600.0
    max_future_skew_s: float = 30.0
    max_speed_kmh: float = 250.0
    checkin_cooldown_s: int = 900
    # Venue matching (checkin(): match_venue): a fix is matched with its accuracy circle capped at
    # this, and a fix that matches no venue is measured against the nearest venue this close.
    match_accuracy_cap_m: float = Field(default=1000.0, gt=0)
    nearest_venue_radius_m: float = Field(default=2000.0, gt=0)
    checkin_rate_per_minute: int = 30  # far above any real user; stops scripted floods
    idempotency_ttl_s: int = 48 * 3600

    # Redemption.
    redemption_failures_per_10min: int = 20  # per staff member and per venue
    void_window_minutes: int = 30

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.jwt_secret is None and self.env == "development" and not self.verification_key_set:
            self.jwt_secret = DEV_JWT_SECRET
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            raise ValueError("CHECKIN_JWT_SECRET must be at least 32 bytes")
        if self.jwt_secret and self.verification_key_set:
            raise ValueError("set either CHECKIN_JWT_SECRET (HS256) or a public key / JWKS, not both")
        if self.env != "development":
            if self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError(f"the development JWT secret is refused outside development (CHECKIN_ENV={self.env})")
            if not (self.jwt_secret or self.verification_key_set):
                raise ValueError(
                    f"CHECKIN_ENV={self.env} needs CHECKIN_JWT_SECRET, CHECKIN_JWT_PUBLIC_KEY or CHECKIN_JWKS_URL"
                )
        algorithm = self.algorithm
        if self.jwt_secret and algorithm != "HS256":
            raise ValueError("an HS256 secret is configured: CHECKIN_JWT_ALGORITHM must be HS256")
        if self.verification_key_set and algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ValueError("a public key / JWKS needs an asymmetric CHECKIN_JWT_ALGORITHM")
        if self.jwt_public_key:
            # Else every token would be refused at run time, e.g. an EC key left at the RS256 default.
            try:
                jwt.get_algorithm_by_name(algorithm).prepare_key(self.jwt_public_key)
            except jwt.InvalidKeyError as exc:
                raise ValueError(f"CHECKIN_JWT_PUBLIC_KEY is not a {algorithm} key: {exc}") from None
        return self

    @property
    def verification_key_set(self) -> bool:
        return bool(self.jwt_public_key or self.jwks_url)

    @property
    def algorithm(self) -> str:
        return self.jwt_algorithm or ("HS256" if self.jwt_secret else "RS256")


@lru_cache
def get_settings() -> Settings:
    return Settings()
