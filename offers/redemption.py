"""Redemption at the till, exactly once, its void, the look-up before it and the list after it.

The work is one database call each (`redeem`, `void_redemption` in migrations/sql): the
unlock's row lock makes concurrent redemptions of one code produce exactly one winner.
Failed attempts are counted in Redis per staff member (growing delays) and per merchant (a
much higher ceiling), so codes cannot be guessed at the till while one person's typos never
hold back a colleague (see "Guessing codes at the till" below).

The look-up answers exactly what a redemption would say about a code, without redeeming:
a code that is not this merchant's (unknown, another merchant's, malformed) is the same 404
and counts as a miss in the same counters; this merchant's code whose campaign does not run
at the venue is the same 422 `venue_not_in_campaign`, not a guess (guessing a real code is
the part a limit protects). So look-ups cannot be used to probe codes more cheaply than
redemptions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core import metrics
from core.auth import Principal
from core.errors import Conflict, Gone, NotFound, ProblemError, TooManyRequests, ValidationFailed
from core.idempotency import key_reused
from core.keyset import after_cursor, decode_cursor, page_of
from core.logs import REQUEST_ID
from core.pseudonyms import customer_pseudonym
from core.redis import RedisError, RedisState
from core.settings import Settings

log = logging.getLogger(__name__)

# Crockford base32 reads O as 0 and I/L as 1, so a code read aloud survives the usual confusions.
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{12}$")

REDEEM_SQL = text("SELECT redeem(:merchant, :code, :venue, :staff, :key, :fingerprint)")
# One statement, so the void and its audit row (offers/audit.py) commit together on the autocommit
# connection as in the console's transaction. The redemption before it is the one after it without
# the void's two fields.
VOID_SQL = text("""
    WITH voided AS (SELECT void_redemption(:merchant, :redemption, :admin, :reason, :window) AS result),
    audited AS (
        INSERT INTO audit_log (merchant_id, actor_sub, actor_role, action, target_type, target_id, before, after,
                               request_id)
        SELECT :merchant, :admin, :role, 'redemption.voided', 'redemption', CAST(:redemption AS text),
               result -> 'response' || '{"voided_at": null, "void_reason": null}', result -> 'response', :request_id
        FROM voided WHERE result ->> 'outcome' = 'done'
    )
    SELECT result FROM voided
""")


def normalize_code(raw: str) -> str | None:
    """'k7qx m2pd 9rtw' -> 'K7QX-M2PD-9RTW'; None when it cannot be a code."""
    compact = re.sub(r"[\s-]", "", raw).upper().translate(_CONFUSABLE)
    if not _CODE.match(compact):
        return None
    return f"{compact[:4]}-{compact[4:8]}-{compact[8:]}"


# Guessing codes at the till.
#
# A code is 60 random bits: 2^60 ≈ 1.15e18. Even with a million live codes, one guess hits with
# p ≈ 1e6 / 1.15e18 ≈ 8.7e-13. The limits stop guessing early without ever standing between a
# colleague and a valid code:
# - Per staff member (the token's sub, within the merchant): the first
#   `redemption_free_failures_per_staff` misses are free (typos), then each miss makes that
#   person wait `redemption_first_delay_s` doubled per further miss, capped at
#   `redemption_max_delay_s` (defaults 5 free, then 1 s, 2 s, 4 s … 256 s, 300 s). The misses are
#   forgotten after `redemption_failure_memory_s` (900 s) without one, which is longer than the
#   cap, so a guesser who waits out each delay is never forgotten: at most 86,400 / 300 = 288
#   guesses a day, 1.05e5 a year, an expected 9e-8 hits a year.
# - Per merchant, over all its staff and venues: `redemption_merchant_failures_per_10min` (200)
#   misses, then every staff member of the merchant waits for the rest of the 10 minutes. One
#   person can add at most 15 misses in 10 minutes (5 free, then 1 + 2 + … + 256 = 511 s of
#   waiting for 9 more, 300 s for the next), so only about 14 people guessing flat out reach it.
#   The ceiling allows 28,800 misses a day, 1.05e7 a year: an expected 9e-6 hits a year.
#   Misses that raced past a person's wait (sent in parallel before the first miss was counted)
#   grow that person's delay but do not count toward the merchant, so one person firing a burst
#   cannot fill the ceiling and lock out the colleagues.
# Each request reads once before and, on a miss, writes once after: one script each.
#
# When Redis does not answer, the same rules run in this process's memory (`_LocalGuesses`): per
# process rather than shared, so with N processes a guesser gets up to N times the allowance, and
# forgotten on restart. Unlimited, the window would still be harmless (at 1,000 misses a second,
# a day of outage is 8.6e7 guesses: an expected 7.5e-5 hits), but a bounded one costs nothing.
MERCHANT_WINDOW_S = 600

# KEYS: the person's miss count, the person's wait, the merchant's miss count.
# ARGV: free misses, first delay (ms), longest delay (ms), person memory (ms), merchant window (ms).
_COUNT_FAILURE_LUA = """
local raced = redis.call('EXISTS', KEYS[2]) == 1
local misses = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local beyond = misses - tonumber(ARGV[1])
if beyond > 0 then
  local delay = math.min(tonumber(ARGV[2]) * 2 ^ math.min(beyond - 1, 40), tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], '1', 'PX', math.max(1, math.floor(delay)))
end
if not raced and redis.call('INCR', KEYS[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return misses
"""

# KEYS: the person's wait, the merchant's miss count. ARGV: the merchant's ceiling.
# Returns the milliseconds to wait (0: none). One command: a pipeline of three costs the worker more.
_WAIT_LUA = """
local wait = math.max(0, redis.call('PTTL', KEYS[1]))
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[1]) then
  wait = math.max(wait, redis.call('PTTL', KEYS[2]))
end
return wait
"""


@dataclass(frozen=True)
class GuessKeys:
    """Redis keys of one staff member's misses and wait, and of their merchant's misses."""

    misses: str
    wait: str
    merchant: str


def guess_keys(merchant: uuid.UUID, staff: str) -> GuessKeys:
    # Per merchant, never per venue: any merchant can send any venue id, so a venue-wide count
    # would let one merchant's guesses touch another's till.
    person = f"rd:guess:{merchant}:staff:{staff}"
    return GuessKeys(f"{person}:misses", f"{person}:wait", f"rd:guess:{merchant}:all")


def delay_after(misses: int, settings: Settings) -> float:
    """Seconds a staff member waits after their `misses`-th miss (0 while misses are free)."""
    beyond = misses - settings.redemption_free_failures_per_staff
    if beyond <= 0:
        return 0.0
    return float(min(settings.redemption_first_delay_s * 2 ** min(beyond - 1, 40), settings.redemption_max_delay_s))


def _too_many(wait_s: float) -> TooManyRequests:
    return TooManyRequests(math.ceil(wait_s), "too many failed redemption attempts; wait before trying another code")


@dataclass
class _Person:
    misses: int = 0
    last_miss: float = 0.0
    wait_until: float = 0.0


@dataclass
class _Merchant:
    misses: int = 0
    window_ends: float = 0.0


class _LocalGuesses:
    """The Redis rules in this process's memory, for while Redis does not answer. Bounded: past
    MAX_ENTRIES the least recently missed are dropped (a flood of made-up staff ids cannot grow it)."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self.people: OrderedDict[tuple[uuid.UUID, str], _Person] = OrderedDict()
        self.merchants: OrderedDict[uuid.UUID, _Merchant] = OrderedDict()

    def wait_s(self, settings: Settings, merchant: uuid.UUID, staff: str, now: float) -> float:
        waits = [0.0]
        person = self.people.get((merchant, staff))
        if person is not None:
            waits.append(person.wait_until - now)
        count = self.merchants.get(merchant)
        if (
            count is not None
            and count.window_ends > now
            and count.misses >= settings.redemption_merchant_failures_per_10min
        ):
            waits.append(count.window_ends - now)
        return max(waits)

    def count(self, settings: Settings, merchant: uuid.UUID, staff: str, now: float) -> None:
        person = self.people.pop((merchant, staff), None) or _Person()
        if now - person.last_miss > settings.redemption_failure_memory_s:
            person = _Person()
        raced = person.wait_until > now
        person.misses += 1
        person.last_miss = now
        if (delay := delay_after(person.misses, settings)) > 0:
            person.wait_until = now + delay
        self.people[(merchant, staff)] = person
        if not raced:
            count = self.merchants.pop(merchant, None)
            if count is None or count.window_ends <= now:
                count = _Merchant(window_ends=now + MERCHANT_WINDOW_S)
            count.misses += 1
            self.merchants[merchant] = count
        for table in (self.people, self.merchants):
            while len(table) > self.MAX_ENTRIES:
                table.popitem(last=False)


LOCAL_GUESSES = _LocalGuesses()


async def _refuse_if_guessing(
    redis: RedisState, settings: Settings, merchant: uuid.UUID, staff: str, keys: GuessKeys
) -> None:
    """429 with the real remaining wait when this staff member, or their merchant, must wait."""
    if redis.usable:
        try:
            wait_ms = await redis.client.eval(
                _WAIT_LUA, 2, keys.wait, keys.merchant, settings.redemption_merchant_failures_per_10min
            )
        except (RedisError, OSError) as exc:
            redis.failed(exc)
        else:
            redis.answered()
            if wait_ms > 0:
                raise _too_many(wait_ms / 1000)
            return
    wait_s = LOCAL_GUESSES.wait_s(settings, merchant, staff, time.monotonic())
    if wait_s > 0:
        raise _too_many(wait_s)


async def _count_failure(
    redis: RedisState, settings: Settings, merchant: uuid.UUID, staff: str, keys: GuessKeys
) -> None:
    if redis.usable:
        try:
            await redis.client.eval(
                _COUNT_FAILURE_LUA,
                3,
                keys.misses,
                keys.wait,
                keys.merchant,
                settings.redemption_free_failures_per_staff,
                round(settings.redemption_first_delay_s * 1000),
                round(settings.redemption_max_delay_s * 1000),
                settings.redemption_failure_memory_s * 1000,
                MERCHANT_WINDOW_S * 1000,
            )
        except (RedisError, OSError) as exc:
            redis.failed(exc)
        else:
            redis.answered()
            return
    LOCAL_GUESSES.count(settings, merchant, staff, time.monotonic())


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


@dataclass(frozen=True)
class RedemptionOutcome:
    """A redemption's receipt, and whether it is the stored receipt of an earlier request with the
    same Idempotency-Key (a replay) rather than a redemption made now."""

    receipt: dict[str, Any]
    replayed: bool


async def redeem(
    conn: AsyncConnection,
    redis: RedisState,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    staff: str,
    raw_code: str,
    venue: uuid.UUID,
    idempotency_key: str | None,
) -> RedemptionOutcome:
    """Redeems the code, or answers a key's stored receipt; raises what the refusals stand for.
    Every outcome is counted in the metrics, whether the API's till or the console's asked.

    Nothing here outlives a failure: the key's advisory lock in redeem() is the transaction's, and
    a miss is counted only once the database has said the code is not this merchant's."""
    try:
        outcome = await _redeem(conn, redis, settings, merchant, staff, raw_code, venue, idempotency_key)
    except ProblemError as exc:
        # The specific code when there is one (venue_not_in_campaign, idempotency_key_reused).
        metrics.count_redemption_failure(exc.errors[0]["code"] if exc.errors else exc.code)
        raise
    metrics.count_redemption(replayed=outcome.replayed)
    return outcome


async def _redeem(
    conn: AsyncConnection,
    redis: RedisState,
    settings: Settings,
    merchant: uuid.UUID,
    staff: str,
    raw_code: str,
    venue: uuid.UUID,
    idempotency_key: str | None,
) -> RedemptionOutcome:
    keys = guess_keys(merchant, staff)
    await _refuse_if_guessing(redis, settings, merchant, staff, keys)
    code = normalize_code(raw_code)
    if code is None:
        await _count_failure(redis, settings, merchant, staff, keys)
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
        receipt = redeem_answer(result)
    except NotFound:
        # Only a code that does not exist (for this merchant) counts as a guess.
        await _count_failure(redis, settings, merchant, staff, keys)
        raise
    return RedemptionOutcome(receipt, replayed=result["outcome"] == "replay")


async def void_redemption(
    conn: AsyncConnection,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    admin: Principal,
    redemption: uuid.UUID,
    reason: str,
) -> dict[str, Any]:
    """Void a redemption within the window, recorded in the audit trail as `redemption.voided`."""
    result = (
        await conn.execute(
            VOID_SQL,
            {
                "merchant": merchant,
                "redemption": redemption,
                "admin": admin.sub,
                "role": admin.role.value,
                "request_id": REQUEST_ID.get(),
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
    keys = guess_keys(merchant, staff)
    await _refuse_if_guessing(redis, settings, merchant, staff, keys)
    code = normalize_code(raw_code)
    row = None
    if code is not None:
        row = (await conn.execute(LOOKUP_SQL, {"merchant": merchant, "code": code, "venue": venue})).mappings().first()
    if row is None:
        await _count_failure(redis, settings, merchant, staff, keys)
        raise no_such_code()
    if not row["at_venue"]:
        raise wrong_venue()
    return {name: value for name, value in row.items() if name != "at_venue"}


# The merchant's redemptions, newest first, a keyset page at a time (core/keyset.py). The code is
# masked in the database, so a full code never leaves it: the last 4 characters are enough to
# match a receipt with the code on a customer's phone, and too few to redeem a voided one again.
# The customer leaves as their pseudonym for the merchant (core/pseudonyms.py), never the sub.
_REDEMPTIONS = """
    SELECT r.id, u.user_id, '****-****-' || right(u.code, 4) AS code_masked, r.offer_id, o.title, r.venue_id,
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
_AFTER = after_cursor("r.redeemed_at", "r.id")
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
    page = page_of(rows, limit, lambda row: (row["redeemed_at"], row["id"]))
    for row in page["items"]:
        row["customer"] = customer_pseudonym(settings, merchant, row.pop("user_id"))
    return page
