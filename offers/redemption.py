"""Redemption at the till, exactly once, and its void.

The work is one database call each (`redeem`, `void_redemption` in migrations/sql): the
unlock's row lock makes concurrent redemptions of one code produce exactly one winner.
Failed attempts are counted in Redis per staff member and per venue, so codes cannot be
guessed at the till (a 60-bit code is out of reach anyway; this stops the attempt early).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import Conflict, Gone, NotFound, TooManyRequests, ValidationFailed
from core.idempotency import key_reused
from core.redis import RedisError, RedisState
from core.settings import Settings

log = logging.getLogger(__name__)

# Crockford base32 reads O as 0 and I/L as 1, so a code read aloud survives the usual confusions.
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{12}$")
FAILURE_WINDOW_S = 600

REDEEM_SQL = text("SELECT redeem(:merchant, :code, :venue, :staff, :key, :fingerprint)")
VOID_SQL = text("SELECT void_redemption(:merchant, :redemption, :admin, :reason, :window)")


def normalize_code(raw: str) -> str | None:
    """'k7qx m2pd 9rtw' -> 'K7QX-M2PD-9RTW'; None when it cannot be a code."""
    compact = re.sub(r"[\s-]", "", raw).upper().translate(_CONFUSABLE)
    if not _CODE.match(compact):
        return None
    return f"{compact[:4]}-{compact[4:8]}-{compact[8:]}"


def _failure_keys(merchant: uuid.UUID, staff: str, venue: uuid.UUID) -> list[str]:
    # The venue count is the merchant's own: any merchant can send any venue id, and must
    # not be able to lock another merchant's till by guessing there.
    return [f"rd:fail:staff:{merchant}:{staff}", f"rd:fail:venue:{merchant}:{venue}"]


async def _refuse_if_guessing(redis: RedisState, settings: Settings, keys: list[str]) -> None:
    if not redis.usable:
        return
    try:
        counts = await redis.client.mget(keys)
    except (RedisError, OSError) as exc:
        redis.failed(exc)
        return
    redis.answered()
    if any(int(c or 0) >= settings.redemption_failures_per_10min for c in counts):
        raise TooManyRequests(FAILURE_WINDOW_S, "too many failed redemption attempts; wait before trying again")


async def _count_failure(redis: RedisState, keys: list[str]) -> None:
    if not redis.usable:
        return
    try:
        async with redis.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, FAILURE_WINDOW_S, nx=True)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        redis.failed(exc)


class UnknownOutcome(RuntimeError):
    """A database function answered with an outcome this code does not know: a deploy where
    the SQL and the Python disagree. It is a 500 (the generic handler), never a 404 that would
    tell the till the code does not exist."""


def _unknown(function: str, outcome: object) -> UnknownOutcome:
    # Only the outcome: the result around it can hold a code, which must never reach a log.
    log.error("%s() returned an unknown outcome %r", function, outcome)
    return UnknownOutcome(f"{function}() returned an unknown outcome {outcome!r}")


def redeem_answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """The response for what `redeem()` answered, or the error it stands for."""
    match result.get("outcome"):
        case "done" | "replay":
            response: dict[str, Any] = result["response"]
            return response
        case "key_reused":
            raise key_reused("redemption")
        case "not_found":
            raise NotFound("no such code", code="not_found")
        case "already_redeemed":
            raise Conflict(
                "this code has already been redeemed", code="already_redeemed", redeemed_at=result["redeemed_at"]
            )
        case "wrong_venue":
            raise ValidationFailed.for_field(
                "venue_id", "venue_not_in_campaign", "this code's campaign does not run at this venue"
            )
        case "expired":
            raise Gone("this code has expired", code="expired", expires_at=result["expires_at"])
        case outcome:
            raise _unknown("redeem", outcome)


def void_answer(result: Mapping[str, Any], window_minutes: int) -> dict[str, Any]:
    """The response for what `void_redemption()` answered, or the error it stands for."""
    match result.get("outcome"):
        case "done":
            response: dict[str, Any] = result["response"]
            return response
        case "not_found":
            raise NotFound("redemption not found")
        case "already_voided":
            raise Conflict("this redemption was already voided", code="already_voided", voided_at=result["voided_at"])
        case "window_passed":
            raise Conflict(
                f"a redemption can be voided only within {window_minutes} minutes",
                code="void_window_passed",
                void_deadline=result["void_deadline"],
            )
        case outcome:
            raise _unknown("void_redemption", outcome)


async def redeem_code(
    conn: AsyncConnection,
    redis: RedisState,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    staff: str,
    raw_code: str,
    venue: uuid.UUID,
    idempotency_key: str | None,
) -> dict[str, Any]:
    keys = _failure_keys(merchant, staff, venue)
    await _refuse_if_guessing(redis, settings, keys)
    code = normalize_code(raw_code)
    if code is None:
        await _count_failure(redis, keys)
        raise NotFound("no such code", code="not_found")
    fingerprint = hashlib.sha256(f"{code}|{venue}".encode()).hexdigest()
    result = (
        await conn.execute(
            REDEEM_SQL,
            {
                "merchant": merchant,
                "code": code,
                "venue": venue,
                "staff": staff,
                "key": idempotency_key,
                "fingerprint": fingerprint,
            },
        )
    ).scalar_one()
    try:
        return redeem_answer(result)
    except NotFound:
        # Only a code that does not exist (for this merchant) counts as a guess.
        await _count_failure(redis, keys)
        raise


async def void_redemption(
    conn: AsyncConnection,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    admin: str,
    redemption: uuid.UUID,
    reason: str,
) -> dict[str, Any]:
    result = (
        await conn.execute(
            VOID_SQL,
            {
                "merchant": merchant,
                "redemption": redemption,
                "admin": admin,
                "reason": reason,
                "window": timedelta(minutes=settings.void_window_minutes),
            },
        )
    ).scalar_one()
    return void_answer(result, settings.void_window_minutes)
