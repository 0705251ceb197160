"""Redemption at the till, exactly once, its void, the look-up before it and the list after it.

The work is one database call each (`redeem`, `void_redemption` in migrations/sql): the
unlock's row lock makes concurrent redemptions of one code produce exactly one winner.
Failed attempts are counted in Redis per staff member and per venue, so codes cannot be
guessed at the till (a 60-bit code is out of reach anyway; this stops the attempt early).

The look-up answers exactly what a redemption would say about a code, without redeeming:
a code that is not this merchant's (unknown, another merchant's, malformed) is the same 404
and counts as a guess in the same counters; this merchant's code whose campaign does not run
at the venue is the same 422 `venue_not_in_campaign`, not a guess (guessing a real code is
the part a limit protects). So look-ups cannot be used to probe codes more cheaply than
redemptions.
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
from core.keyset import decode_cursor, page_of
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


def no_such_code() -> NotFound:
    """The one 404 for a code that is not this merchant's, whatever the reason."""
    return NotFound("no such code", code="not_found")


def wrong_venue() -> ValidationFailed:
    return ValidationFailed.for_field(
        "venue_id", "venue_not_in_campaign", "this code's campaign does not run at this venue"
    )


def redeem_answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """The response for what `redeem()` answered, or the error it stands for."""
    match result.get("outcome"):
        case "done" | "replay":
            response: dict[str, Any] = result["response"]
            return response
        case "key_reused":
            raise key_reused("redemption")
        case "not_found":
            raise no_such_code()
        case "already_redeemed":
            raise Conflict(
                "this code has already been redeemed", code="already_redeemed", redeemed_at=result["redeemed_at"]
            )
        case "wrong_venue":
            raise wrong_venue()
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
        raise no_such_code()
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


# What the till sees before redeeming: the offer's texts and the code's state now. The state
# reads as redeem() decides: redeemed before expired.
LOOKUP_SQL = text("""
    SELECT u.code, u.offer_id, o.title, o.description, o.terms,
           CASE WHEN u.redeemed_at IS NOT NULL THEN 'redeemed'
                WHEN u.expires_at <= now() THEN 'expired' ELSE 'active' END AS state,
           u.expires_at, u.redeemed_at,
           EXISTS (SELECT 1 FROM campaign_venues cv JOIN venues x ON x.id = cv.venue_id
                   WHERE cv.campaign_id = u.campaign_id AND cv.venue_id = :venue AND x.deleted_at IS NULL) AS at_venue
    FROM unlocks u JOIN offers o ON o.id = u.offer_id
    WHERE u.code = :code AND u.merchant_id = :merchant
""")


async def look_up_code(
    conn: AsyncConnection,
    redis: RedisState,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    staff: str,
    raw_code: str,
    venue: uuid.UUID,
) -> dict[str, Any]:
    """The code's offer and state, changing nothing but the guess counters on a miss."""
    keys = _failure_keys(merchant, staff, venue)
    await _refuse_if_guessing(redis, settings, keys)
    code = normalize_code(raw_code)
    row = None
    if code is not None:
        row = (await conn.execute(LOOKUP_SQL, {"merchant": merchant, "code": code, "venue": venue})).mappings().first()
    if row is None:
        await _count_failure(redis, keys)
        raise no_such_code()
    if not row["at_venue"]:
        raise wrong_venue()
    return {name: value for name, value in row.items() if name != "at_venue"}


# The merchant's redemptions, newest first, a keyset page at a time (core/keyset.py). The code is
# masked in the database, so a full code never leaves it: the last 4 characters are enough to
# match a receipt with the code on a customer's phone, and too few to redeem a voided one again.
_REDEMPTIONS = """
    SELECT r.id, '****-****-' || right(u.code, 4) AS code_masked, r.offer_id, o.title, r.venue_id,
           r.redeemed_at, r.staff_sub AS staff, r.voided_at, r.void_reason,
           r.redeemed_at + :window AS void_deadline,
           r.voided_at IS NULL AND r.redeemed_at + :window >= now() AS voidable
    FROM redemptions r
    JOIN unlocks u ON u.id = r.unlock_id
    JOIN offers o ON o.id = r.offer_id
    WHERE r.merchant_id = :merchant {venue} {after}
    ORDER BY r.redeemed_at DESC, r.id DESC
    LIMIT :limit
"""
# As in the wallet, the plain `redeemed_at <=` lets the index start the scan at the cursor.
_AFTER = "AND r.redeemed_at <= :after_at AND (r.redeemed_at, r.id) < (:after_at, :after_id)"
REDEMPTIONS_SQL = {
    (at_venue, paging): text(
        _REDEMPTIONS.format(venue="AND r.venue_id = :venue" if at_venue else "", after=_AFTER if paging else "")
    )
    for at_venue in (False, True)
    for paging in (False, True)
}


async def redemptions_page(
    conn: AsyncConnection,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    venue: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page of the merchant's redemptions (at one venue, or all), with whether each can
    still be voided under the void window now. The caller checks that the venue is the merchant's."""
    params: dict[str, Any] = {
        "merchant": merchant,
        "venue": venue,
        "window": timedelta(minutes=settings.void_window_minutes),
        "limit": limit + 1,
    }
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    query = REDEMPTIONS_SQL[(venue is not None, cursor is not None)]
    rows = [dict(row) for row in (await conn.execute(query, params)).mappings()]
    return page_of(rows, limit, lambda row: (row["redeemed_at"], row["id"]))
