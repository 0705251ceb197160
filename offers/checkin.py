"""The check-in: plausibility, venue match, holdout assignment and unlocks, atomically.

Flow (one Redis round trip, one database round trip, then a Redis call off the latency path):
1. pure checks on the fix (geo.plausibility): decided here, still recorded in the database;
2. Redis: in-flight lock for the Idempotency-Key (409 while running) and the per-user rate
   limit. A request over the limit is 429, unless its key has a stored answer: then it gets that
   answer (a retry of a check-in that ran is not a new check-in). Finding out costs one read of
   idempotent_replay in the database, on this path only; a request that meets the lock reads it
   too (see 4) and gets 409 only when the key has no stored answer yet;
3. PostgreSQL: `SELECT checkin(...)`, one call that runs these steps, each a function in
   its own file under migrations/sql/functions/ (checkin.sql is the orchestrator):
   match_venue (the accuracy circle, capped, against the geofences; else the named or the
   nearest venue), too_fast (implied_speed.sql has the speed formula) and too_frequent
   against the user's accepted history. A refusal is then written in one statement (the
   check-in, its events and counters, the stored answer); an accepted check-in goes on with
   count_return_visits, then for each running campaign (running_campaigns) accept_in_campaign:
   exposure_arm (the holdout arm), rule_met for each offer whose schedule_allows, and
   unlock_earned (a group's members too). The response is stored under the Idempotency-Key
   (idempotent_replay.sql answers a repeat);
4. Redis: release the in-flight lock. An answered check-in hands its lock to a task that frees it
   after the response is on its way, together with the other locks handed over meanwhile
   (core/redis.py: RedisState.delete_soon), so the lock may outlive the answer by a moment. That
   is safe because the answer is committed before it is sent: a retry that meets the lock (a
   client that lost its 201) finds the stored answer and gets it, never a 409. When the database
   answered a replay, the release is awaited and also gives back the rate count step 2 took:
   replays never count toward the limit.

The lock is released after any failure too, before the error answer is sent: an error in Python
or in the database (awaited), or a cancelled request (from a task of its own, which the
cancellation cannot reach). A retry after a 500 never meets a 409.

Check-in keys are scoped by the user's sub alone: they live in idempotency_keys, which holds
nothing else (a staff member's redemption keys are in redemption_keys). In Redis the lock is
`ck:inflight:<length of sub>:<sub>:<key>`, one (sub, key) pair whatever either contains, and
nothing of the redemption path starts with `ck:`.

The limits the database applies come from Settings, passed with the call: max_speed_kmh,
checkin_cooldown_s, and the venue search's match_accuracy_cap_m and nearest_venue_radius_m
(one venue_match_limits value, a composite type of migrations/sql/0002/schema.sql).

The speed check reads PostgreSQL, never a cache: under the user's advisory lock the
history is settled, so two concurrent check-ins in two cities cannot both pass.

When Redis is down or slow (each call times out after `redis_timeout_s`, and after a
few failures in a row Redis is skipped for two seconds), steps 2 and 4 are skipped and each limit
degrades like this:
- rate limit: none;
- in-flight lock: a concurrent duplicate waits for the first request on the user's
  advisory lock and gets its stored response (201) instead of a 409;
- speed, cool-down, per-user and budget limits, idempotent replay: unchanged, they live
  in PostgreSQL.
Nothing accepted is lost: PostgreSQL is the record.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import Conflict, TooManyRequests
from core.idempotency import key_reused
from core.redis import RedisError, RedisState
from core.settings import Settings
from geo.plausibility import FixLimits, Rejection, check_fix


@dataclass(frozen=True)
class CheckinRequest:
    lat: float
    lon: float
    accuracy_m: float
    observed_at: datetime
    venue_id: uuid.UUID | None = None
    device_id: str | None = None
    mocked: bool | None = None

    def fingerprint(self) -> str:
        """Same body, same fingerprint: a replayed key is compared on values, not bytes
        (one instant written with two UTC offsets is one value)."""
        # The fields by hand: dataclasses.asdict deep-copies each value, a cost on every check-in.
        payload = {
            "lat": self.lat,
            "lon": self.lon,
            "accuracy_m": self.accuracy_m,
            "observed_at": self.observed_at.astimezone(UTC).isoformat(),
            "venue_id": str(self.venue_id) if self.venue_id else None,
            "device_id": self.device_id,
            "mocked": self.mocked,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CheckinOutcome:
    """What a check-in answered: `body` is the response as JSON text, sent as it is (a replay's is
    the stored text, byte for byte); the rest says what it holds, for metrics and logs."""

    body: str
    status: str  # "accepted" or "rejected"
    reason: str | None  # why it was rejected
    unlocks: int  # offers unlocked
    replayed: bool  # the stored answer of an earlier request with this key


# The response body comes back as JSON text and goes out as it is: no decode and re-encode. The
# columns after it read what the body says, for CheckinOutcome.
_ANSWER = """r ->> 'outcome' AS outcome, (r -> 'response')::text AS body, r #>> '{response,status}' AS status,
           r #>> '{response,reason}' AS reason, jsonb_array_length(r #> '{response,unlocked}') AS unlocks"""

CHECKIN_SQL = text(f"""
    SELECT {_ANSWER}
    FROM checkin(:user, :key, :fingerprint, :lon, :lat, :accuracy_m, :observed_at, :venue_id, :device_id, :mocked,
                 :reason, CAST(:detail AS jsonb), :max_speed_kmh, make_interval(secs => :cooldown_s),
                 CAST(ROW(:match_accuracy_cap_m, :nearest_venue_radius_m) AS venue_match_limits)) AS r
""")

# Over the rate limit: what checkin() would answer first, without running it (no row for a new key).
STORED_SQL = text(f"SELECT {_ANSWER} FROM idempotent_replay(:user, :key, :fingerprint) AS r")

# In-flight lock and rate limit in one round trip. KEYS: the lock, the user's rate counter. ARGV: the
# limit, the window (s), the lock's life (ms). Only admitted requests are counted, so a replay can
# give its count back; 'ok' comes with the counter's time to live, which says which window counted it.
ADMIT_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return {'in_flight', redis.call('PTTL', KEYS[1])} end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {'limited', redis.call('TTL', KEYS[2])}
end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return {'ok', redis.call('PTTL', KEYS[2])}
"""
# A replay's release: the lock goes, and the count goes back to the window that took it. ARGV: the
# counter's time to live when the request was admitted. A later window has more time left than that
# (for any request shorter than the window itself), so a count is never given to a window it was not in.
GIVE_BACK_LUA = """
redis.call('DEL', KEYS[1])
local left = redis.call('PTTL', KEYS[2])
if left > 0 and left <= tonumber(ARGV[1]) then redis.call('DECR', KEYS[2]) end
return left
"""
# Short: the lock only spares the database a duplicate (the user's advisory lock and the stored answer
# keep a duplicate safe without it), and a lock left by a killed worker makes retries wait this long.
IN_FLIGHT_TTL_MS = 10_000
RATE_WINDOW_S = 60


def _keys(user: str, key: str) -> tuple[str, str]:
    """The in-flight lock of (user, key) and the user's rate counter. The sub's length goes first,
    so no two pairs share a lock: ('a:b', 'c') and ('a', 'b:c') would otherwise both be 'a:b:c'."""
    return f"ck:inflight:{len(user)}:{user}:{key}", f"ck:rate:{user}"


async def check_in(
    conn: AsyncConnection,
    redis: RedisState,
    settings: Settings,
    *,
    user: str,
    key: str,
    req: CheckinRequest,
    now: datetime,
) -> CheckinOutcome:
    """The check-in's answer, a replay's being the stored one; raises what the refusals stand for
    (409 in flight, 429 over the rate limit, 422 a key reused with another body)."""
    rejection = check_fix(
        accuracy_m=req.accuracy_m,
        observed_at=req.observed_at,
        now=now,
        mocked=bool(req.mocked),
        limits=FixLimits(
            settings.max_accuracy_m, settings.max_fix_age_s, settings.max_future_skew_s, settings.min_accuracy_m
        ),
    )
    in_flight_key, rate_key = _keys(user, key)
    admitted_ttl_ms: int | None = None  # set while this request holds the in-flight lock
    if redis.usable:
        try:
            verdict, value = await redis.client.eval(
                ADMIT_LUA,
                2,
                in_flight_key,
                rate_key,
                settings.checkin_rate_per_minute,
                RATE_WINDOW_S,
                IN_FLIGHT_TTL_MS,
            )
        except (RedisError, OSError) as exc:
            redis.failed(exc)
        except BaseException:
            # Cancelled while Redis answered, so the lock may be ours with nobody left to free it. If it
            # was a duplicate's, freeing it is harmless: the user's advisory lock still serialises both.
            redis.delete_soon(in_flight_key)
            raise
        else:
            redis.answered()
            if verdict == "in_flight":
                # Either still running, or answered with its lock not freed yet (step 4).
                if (stored := await _stored(conn, user, key, req)) is not None:
                    return _outcome(stored)
                raise Conflict(
                    "a request with this Idempotency-Key is still running",
                    code="idempotency_in_progress",
                    headers={"Retry-After": str(max(1, math.ceil(int(value) / 1000)))},
                )
            if verdict == "limited":
                return await _stored_or_limited(conn, user, key, req, retry_after_s=int(value))
            admitted_ttl_ms = int(value)

    try:
        row = (await conn.execute(CHECKIN_SQL, _params(settings, user, key, req, rejection))).one()
    except Exception:
        if admitted_ttl_ms is not None:
            await _release(redis, in_flight_key)
        raise
    except BaseException:  # cancelled: an await here would be cancelled as well
        if admitted_ttl_ms is not None:
            redis.delete_soon(in_flight_key)
        raise
    if admitted_ttl_ms is not None:
        if row.outcome == "replay":
            await _release(redis, in_flight_key, rate_key, admitted_ttl_ms)
        else:
            redis.delete_soon(in_flight_key)  # the answer is committed: see step 4
    return _outcome(row)


def _params(
    settings: Settings, user: str, key: str, req: CheckinRequest, rejection: Rejection | None
) -> dict[str, Any]:
    return {
        "user": user,
        "key": key,
        "fingerprint": req.fingerprint(),
        "lon": req.lon,
        "lat": req.lat,
        "accuracy_m": req.accuracy_m,
        "observed_at": req.observed_at,
        "venue_id": req.venue_id,
        "device_id": req.device_id,
        "mocked": req.mocked,
        "reason": rejection.reason if rejection else None,
        "detail": json.dumps(rejection.detail) if rejection else None,
        "max_speed_kmh": settings.max_speed_kmh,
        "cooldown_s": settings.checkin_cooldown_s,
        "match_accuracy_cap_m": settings.match_accuracy_cap_m,
        "nearest_venue_radius_m": settings.nearest_venue_radius_m,
    }


def _outcome(row: Row[Any]) -> CheckinOutcome:
    if row.outcome == "key_reused":
        raise key_reused("check-in")
    return CheckinOutcome(
        body=row.body, status=row.status, reason=row.reason, unlocks=row.unlocks, replayed=row.outcome == "replay"
    )


async def _stored_or_limited(
    conn: AsyncConnection, user: str, key: str, req: CheckinRequest, *, retry_after_s: int
) -> CheckinOutcome:
    """Over the rate limit: the stored answer when this key has one, else 429."""
    row = await _stored(conn, user, key, req)
    if row is None:
        raise TooManyRequests(retry_after_s, "too many check-ins; try again later")
    return _outcome(row)


async def _stored(conn: AsyncConnection, user: str, key: str, req: CheckinRequest) -> Row[Any] | None:
    """What checkin() would answer first for this key, without running it: no row for a new key."""
    return (await conn.execute(STORED_SQL, {"user": user, "key": key, "fingerprint": req.fingerprint()})).first()


async def _release(
    redis: RedisState, in_flight_key: str, rate_key: str | None = None, give_back_ttl_ms: int | None = None
) -> None:
    """Frees the lock; with `give_back_ttl_ms` (a replay), also gives back the rate count."""
    try:
        if rate_key is None or give_back_ttl_ms is None:
            await redis.client.delete(in_flight_key)
        else:
            await redis.client.eval(GIVE_BACK_LUA, 2, in_flight_key, rate_key, give_back_ttl_ms)
    except (RedisError, OSError) as exc:
        redis.failed(exc)
    except BaseException:
        redis.delete_soon(in_flight_key)  # cancelled on the way: the answer stands, the lock must go
        raise
