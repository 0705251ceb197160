"""Configuration: one pydantic-settings class, every variable prefixed CHECKIN_.

Unsafe defaults (the development JWT secret, a short or guessable secret, no verification key,
a JWKS URL over plain http, a leeway over 5 minutes, an empty audience or issuer, a limit of
zero or less) are refused outside development, so a production deploy cannot start
half-configured.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import jwt
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # 42 bytes, refused outside development
ASYMMETRIC_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"}
MIN_SECRET_DISTINCT_CHARACTERS = 16
MAX_JWT_LEEWAY_S = 300
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
HALF_EARTH_KM = 20_038  # the farthest two fixes can be apart
# Refused at zero or below outside development: each would stop the service or disable a limit.
POSITIVE_LIMITS = (
    "max_body_bytes",
    "db_pool_size",
    "redis_timeout_s",
    "checkin_rate_per_minute",
    "idempotency_ttl_s",
    "jwt_max_lifetime_s",
    "max_accuracy_m",
    "max_fix_age_s",
    "max_speed_kmh",
)


def weak_secret_reason(secret: str) -> str | None:
    """Why an HS256 secret is too guessable, or None. The rule is simple on purpose: at least 16
    distinct characters, and not one shorter string repeated ("abcd" * 8). Length (32 bytes) is
    checked everywhere; this rule only outside development."""
    if len(set(secret)) < MIN_SECRET_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_SECRET_DISTINCT_CHARACTERS} distinct characters"
    if (secret + secret).find(secret, 1) < len(secret):  # a rotation equals it only when it repeats
        return "is one shorter string repeated"
    return None


def _jwks_url_allowed(url: str, env: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return env == "test" and parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


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
    jwt_max_lifetime_s: int = 24 * 3600  # exp - iat of an accepted token; a longer-lived one is refused

    max_body_bytes: int = 64 * 1024
    # The request target plus every header line (`name: value\r\n`): 431 beyond it. The HTTP parser
    # has no bound of its own, so without this a client grows the process with one endless header.
    max_header_bytes: int = Field(default=16 * 1024, gt=0)
    map_tile_url: str | None = None  # console maps: tiles drawn under fences when set, else a plain background
    public_docs: bool | None = None  # /docs, /redoc, /openapi.json; unset: served except in production
    # /metrics answers only `Authorization: Bearer <metrics_token>`; unset, /metrics is 404.
    metrics_token: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"  # info: one line per request

    # Check-in plausibility.
    max_accuracy_m: float = 100.0
    min_accuracy_m: float = 1.0  # a finer accuracy is no real phone's: refused as mocked_location
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

    # Redemption: guessing codes at the till (offers/redemption.py). A staff member has a few free
    # misses, then waits a delay that doubles with each further miss up to a cap; the merchant has a
    # much higher ceiling over all its staff and venues, far above what one person can reach.
    redemption_free_failures_per_staff: int = Field(default=5, ge=0)  # typos before any wait
    redemption_first_delay_s: float = Field(default=1.0, gt=0)  # then 2 s, 4 s, ...
    redemption_max_delay_s: float = Field(default=300.0, gt=0)
    redemption_failure_memory_s: int = Field(default=900, gt=0)  # misses forgotten after this long without one
    redemption_merchant_failures_per_10min: int = Field(default=200, gt=0)  # all the merchant's staff together
    void_window_minutes: int = 30

    # A customer's feedback and conversations (offers/feedback.py, offers/conversations.py).
    feedback_edit_minutes: int = Field(default=60, ge=0)  # a feedback can be changed this long after it is given
    conversation_messages_per_hour: int = Field(default=10, gt=0)  # per customer and conversation, then 429
    # The key of the customer pseudonyms merchants see (core/pseudonyms.py). Unset, it is derived from
    # the HS256 secret (in development and test without one, from a fixed development key); production
    # with a public key or JWKS must set it, because there is no secret to derive it from.
    pseudonym_key: str | None = None

    # Webhooks (offers/webhooks/): loopback receivers, over plain http too, only for tests and local
    # development; the delivery worker runs in `serve` (one leader among all processes) unless it is off.
    webhook_allow_loopback: bool = False
    webhook_worker: bool = True  # false where `checkin-offers worker` delivers instead
    webhook_poll_s: float = Field(default=1.0, gt=0)  # how often the worker looks for new events and due retries
    webhook_retry_base_s: float = Field(default=5.0, gt=0)  # the first retry comes within this; it doubles each time
    webhook_retry_cap_s: float = Field(default=3600.0, gt=0)  # the longest wait between two attempts

    # Location retention (offers/privacy/retention.py): accepted check-ins keep their position and
    # device id this many days, rejected ones (with the figures of their detail) for fraud review this
    # many; then they are purged in batches by a job in `serve` (one leader) or `checkin-offers purge`.
    raw_location_days: int = Field(default=30, gt=0)
    fraud_review_days: int = Field(default=90, gt=0)
    privacy_purge: bool = True  # false where cron runs `checkin-offers purge` instead

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.redemption_max_delay_s >= self.redemption_failure_memory_s:
            # Else a guesser who waits out the longest delay is forgotten and starts afresh.
            raise ValueError("CHECKIN_REDEMPTION_MAX_DELAY_S must be shorter than CHECKIN_REDEMPTION_FAILURE_MEMORY_S")
        if self.max_speed_kmh > 0 and self.raw_location_days * 86400 - self.max_fix_age_s - self.max_future_skew_s < (
            HALF_EARTH_KM / self.max_speed_kmh * 3600
        ):
            # The speed check compares a fix with the user's nearest accepted ones (too_fast()). A fix
            # purged before any new fix could have been too fast against it would pass a spoofer.
            raise ValueError(
                "CHECKIN_RAW_LOCATION_DAYS is too short for CHECKIN_MAX_FIX_AGE_S and CHECKIN_MAX_SPEED_KMH: "
                "a purged position could still decide the speed check"
            )
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
            self._refuse_unsafe_outside_development()
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

    def _refuse_unsafe_outside_development(self) -> None:
        if self.jwt_secret is not None and (reason := weak_secret_reason(self.jwt_secret)):
            raise ValueError(f"CHECKIN_JWT_SECRET {reason} (CHECKIN_ENV={self.env})")
        if self.jwks_url and not _jwks_url_allowed(self.jwks_url, self.env):
            raise ValueError(
                "CHECKIN_JWKS_URL must be https (plain http only to a loopback address in test): "
                "keys fetched over plain http can be replaced on the way"
            )
        if not 0 <= self.jwt_leeway_s <= MAX_JWT_LEEWAY_S:
            raise ValueError(f"CHECKIN_JWT_LEEWAY_S must be between 0 and {MAX_JWT_LEEWAY_S} seconds")
        for name in ("jwt_audience", "jwt_issuer"):
            if not getattr(self, name).strip():
                raise ValueError(f"CHECKIN_{name.upper()} must not be empty")
        for name in POSITIVE_LIMITS:
            if getattr(self, name) <= 0:
                raise ValueError(f"CHECKIN_{name.upper()} must be positive")
        if not 0 <= self.min_accuracy_m < self.max_accuracy_m:  # else every fix would be refused
            raise ValueError("CHECKIN_MIN_ACCURACY_M must be at least 0 and below CHECKIN_MAX_ACCURACY_M")

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_a_weak_metrics_token(self) -> Settings:
        if self.metrics_token is not None:
            if len(self.metrics_token.encode()) < 32:
                raise ValueError("CHECKIN_METRICS_TOKEN must be at least 32 bytes")
            if self.env != "development" and (reason := weak_secret_reason(self.metrics_token)):
                raise ValueError(f"CHECKIN_METRICS_TOKEN {reason} (CHECKIN_ENV={self.env})")
        return self

    @model_validator(mode="after")
    def _refuse_an_unsafe_pseudonym_key(self) -> Settings:
        if not self.pseudonym_key:  # an empty variable (docker compose's ${VAR:-}) is unset
            self.pseudonym_key = None
            if self.env == "production" and not self.jwt_secret:
                # Keyed by public material, anyone could test a guessed sub against a pseudonym.
                raise ValueError(
                    "CHECKIN_ENV=production with a public key or JWKS needs CHECKIN_PSEUDONYM_KEY "
                    "(a secret of at least 32 bytes): customer pseudonyms are keyed with it"
                )
            return self
        if len(self.pseudonym_key.encode()) < 32:
            raise ValueError("CHECKIN_PSEUDONYM_KEY must be at least 32 bytes")
        if self.env != "development":
            if reason := weak_secret_reason(self.pseudonym_key):
                raise ValueError(f"CHECKIN_PSEUDONYM_KEY {reason} (CHECKIN_ENV={self.env})")
            if self.pseudonym_key == self.jwt_secret:
                raise ValueError("CHECKIN_PSEUDONYM_KEY must not be the JWT secret")
        return self

    @property
    def docs_served(self) -> bool:
        """Whether /docs, /redoc and /openapi.json are served: CHECKIN_PUBLIC_DOCS, else all but production."""
        return self.public_docs if self.public_docs is not None else self.env != "production"

    @property
    def verification_key_set(self) -> bool:
        return bool(self.jwt_public_key or self.jwks_url)

    @property
    def algorithm(self) -> str:
        return self.jwt_algorithm or ("HS256" if self.jwt_secret else "RS256")


@lru_cache
def get_settings() -> Settings:
    return Settings()
