"""Erasure: every row and Redis key that names a person (their sub) is deleted or irreversibly
pseudonymised, at their request (DELETE /v1/me) or a platform admin's (POST /v1/privacy/erasures).

Rows that a campaign's figures or a merchant's records stand on are kept under a placeholder,
`erased:` and a random uuid, one per erasure and stored nowhere else: the rows of the erased
person still belong together (one exposure per campaign, their visits, their unlocks), so every
count, sum and analysis reads the same, but nothing leads from them back to the sub. What only
served the person goes:

- check-ins: the placeholder, and the position, accuracy and device id forgotten at once, as
  retention would later (retention.FORGET_POSITION);
- exposures, unlocks, per-offer unlock counts, feedback, conversations and events: the
  placeholder. Events are append-only; their trigger allows exactly this change (user_id to a
  placeholder, nothing else);
- unredeemed codes are replaced by a value no till can type (`erased:` and a uuid), so the codes
  the person held stop working; their expiry, and so the stats' time to redeem, is unchanged;
- the person's own words (feedback comments, their messages in conversations) are replaced by
  ERASED_TEXT: they may hold anything about them. The thread, its times and the merchant's replies
  stay, because they are the merchant's record of its service (and the satisfaction figures);
- webhook messages about the person's events lose the customer's pseudonym and their words;
  pending deliveries send that. What a merchant's receiver already got is the merchant's to erase;
- idempotency keys (scoped by the sub, holding their check-in answers) are deleted; so are the
  Redis keys that name the sub (the check-in rate counter, in-flight locks), which would expire
  within a minute anyway.

It runs in one transaction under the user's advisory lock, the one every check-in of theirs takes,
so no check-in of theirs interleaves with it. It is idempotent: a request that finds nothing left
to erase for a sub already erased answers that erasure's receipt again. The receipt holds an id and
two times; the sub only as a keyed hash (HMAC-SHA256 under CHECKIN_PSEUDONYM_KEY), enough to
recognise the same person asking again.

The same sub coming back later (checking in again) is a new customer: nothing links them to their
erased past, so first-visit rules fire again, per-user limits start afresh and, in a running
experiment, they are exposed again (to the same arm, which is drawn from the sub) and counted as
one more user; the erased exposure stays counted under its placeholder. Erasing them again erases
what they did since, with a new receipt.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import ERASED_SUB_PREFIX
from core.pseudonyms import pseudonym_key
from core.redis import RedisError, RedisState
from core.settings import Settings
from offers.privacy.retention import FORGET_POSITION

log = logging.getLogger(__name__)

ERASED_TEXT = "(erased at the customer's request)"
_HASH_LABEL = b"checkin-offers erasure\0"

# The statements, in order: rows found through the person's events come before the events are
# renamed. Every one names the sub as :sub; the placeholder is :placeholder. Events, the user's
# accepted check-ins, unlocks and conversations have an index on user_id; check-ins of every
# status, exposures and per-offer counts are found through the events that every one of them has.
ERASE_SQL: tuple[tuple[str, Any], ...] = tuple(
    (name, text(sql))
    for name, sql in (
        (
            "webhook_messages",
            """
            UPDATE webhook_messages m
            SET body = ((m.body::jsonb) #- '{data,customer}' #- '{data,comment}' #- '{data,body}')::text
            FROM events e
            WHERE e.user_id = :sub AND m.source = 'event:' || e.id
            """,
        ),
        (
            "checkins",
            f"""
            UPDATE checkins c SET user_id = :placeholder, {FORGET_POSITION}
            WHERE c.user_id = :sub
              AND c.id IN (SELECT checkin_id FROM events WHERE user_id = :sub AND checkin_id IS NOT NULL
                           UNION ALL
                           SELECT id FROM checkins WHERE user_id = :sub AND status = 'accepted')
            """,
        ),
        (
            "exposures",
            """
            UPDATE exposures SET user_id = :placeholder
            WHERE user_id = :sub
              AND campaign_id IN (SELECT campaign_id FROM events WHERE user_id = :sub AND type = 'exposure')
            """,
        ),
        (
            "user_offer_unlocks",
            """
            UPDATE user_offer_unlocks SET user_id = :placeholder
            WHERE user_id = :sub
              AND offer_id IN (SELECT offer_id FROM events WHERE user_id = :sub AND offer_id IS NOT NULL)
            """,
        ),
        (
            "unlock_feedback",
            """
            UPDATE unlock_feedback SET user_id = :placeholder,
                   comment = CASE WHEN comment IS NOT NULL THEN :erased_text END
            WHERE user_id = :sub AND unlock_id IN (SELECT id FROM unlocks WHERE user_id = :sub)
            """,
        ),
        (
            "conversation_messages",
            """
            UPDATE conversation_messages SET author_sub = :placeholder, body = :erased_text
            WHERE author = 'customer'
              AND conversation_id IN (SELECT id FROM conversations WHERE user_id = :sub)
            """,
        ),
        ("conversations", "UPDATE conversations SET user_id = :placeholder WHERE user_id = :sub"),
        (
            "unlocks",
            """
            UPDATE unlocks SET user_id = :placeholder,
                   code = CASE WHEN redeemed_at IS NULL THEN 'erased:' || gen_random_uuid() ELSE code END
            WHERE user_id = :sub
            """,
        ),
        ("events", "UPDATE events SET user_id = :placeholder WHERE user_id = :sub"),
        ("idempotency_keys", "DELETE FROM idempotency_keys WHERE scope = :sub"),
    )
)

# The check-in's own lock on the user (checkin()): no check-in of theirs runs while this does.
LOCK_USER_SQL = text("SELECT pg_advisory_xact_lock(hashtextextended(:sub, 0))")
LATEST_RECEIPT_SQL = text("""
    SELECT id, requested_at, completed_at FROM privacy_erasures
    WHERE subject_hash = :subject_hash ORDER BY requested_at DESC LIMIT 1
""")
INSERT_RECEIPT_SQL = text("""
    INSERT INTO privacy_erasures (subject_hash, requested_by, requested_at, completed_at)
    VALUES (:subject_hash, :requested_by, now(), clock_timestamp())
    RETURNING id, requested_at, completed_at
""")


@dataclass(frozen=True)
class Receipt:
    id: uuid.UUID
    requested_at: datetime
    completed_at: datetime
    new: bool  # False: nothing was left to erase, and this is the earlier erasure's receipt

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "requested_at": self.requested_at, "completed_at": self.completed_at}


def subject_hash(settings: Settings, sub: str) -> str:
    """The keyed hash a receipt holds instead of the sub: full length, so two people never share one."""
    return hmac.new(pseudonym_key(settings), _HASH_LABEL + sub.encode(), hashlib.sha256).hexdigest()


def redis_patterns(sub: str) -> tuple[str, str]:
    """The check-in's Redis keys that name the sub (offers/checkin.py _keys): the rate counter, and a
    SCAN pattern of the in-flight locks (one per Idempotency-Key), the sub's glob characters escaped."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", sub)
    return f"ck:rate:{sub}", f"ck:inflight:{len(sub)}:{escaped}:*"


async def erase_redis_keys(redis: RedisState, sub: str) -> int:
    """Delete the sub's Redis keys: how many. With Redis away they are left to expire (a minute at most)."""
    rate_key, in_flight = redis_patterns(sub)
    try:
        keys = [rate_key] + [key async for key in redis.client.scan_iter(match=in_flight, count=1000)]
        deleted = int(await redis.client.delete(*keys))
    except RedisError as exc:
        redis.failed(exc)
        log.warning("erasure left the user's Redis keys to expire")
        return 0
    redis.answered()
    return deleted


async def erase_person(
    session: AsyncSession, redis: RedisState, settings: Settings, sub: str, *, requested_by: str
) -> Receipt:
    """Erase everything that names `sub`, in the caller's transaction (flushed, not committed), and
    its Redis keys: the receipt. requested_by is 'self' or 'platform_admin'."""
    await session.execute(LOCK_USER_SQL, {"sub": sub})
    # The rows live on under a sub that no token may carry (core/auth.py).
    params = {"sub": sub, "placeholder": f"{ERASED_SUB_PREFIX}{uuid.uuid4()}", "erased_text": ERASED_TEXT}
    erased = 0
    for _, statement in ERASE_SQL:
        erased += (await session.execute(statement, params)).rowcount  # type: ignore[attr-defined]
    erased += await erase_redis_keys(redis, sub)
    digest = subject_hash(settings, sub)
    if erased == 0 and (earlier := (await session.execute(LATEST_RECEIPT_SQL, {"subject_hash": digest})).first()):
        return Receipt(earlier.id, earlier.requested_at, earlier.completed_at, new=False)
    row = (await session.execute(INSERT_RECEIPT_SQL, {"subject_hash": digest, "requested_by": requested_by})).one()
    return Receipt(row.id, row.requested_at, row.completed_at, new=True)
