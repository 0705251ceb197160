"""The check-in: plausibility, venue match, holdout assignment and unlocks, atomically.

Flow (one Redis round trip, one database round trip, one Redis round trip):
1. pure checks on the fix (geo.plausibility): decided here, still recorded in the database;
2. Redis: in-flight lock for the Idempotency-Key (409 while running) and the per-user rate
   limit (429);
3. PostgreSQL: `SELECT checkin(...)`, one call that runs these steps, each a function in
   its own file under migrations/sql/functions/ (checkin.sql is the orchestrator):
   match_venue (the accuracy circle, capped, against the geofences; else the named or the
   nearest venue), too_fast (implied_speed.sql has the speed formula) and too_frequent
   against the user's accepted history, record_checkin, count_return_visits, then for each
   running campaign accept_in_campaign: exposure_arm (the holdout arm), rule_met for each
   offer whose schedule_allows, and unlock_earned (a group's members too). The response is
   stored under the Idempotency-Key (idempotent_replay.sql answers a repeat);
4. Redis: release the in-flight lock.

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
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import Conflict, TooManyRequests
from core.idempotency import key_reused
from core.redis import RedisError, RedisState
from core.settings import Settings
from geo.plausibility import FixLimits, check_fix


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
        payload = asdict(self) | {
            "observed_at": self.observed_at.astimezone(UTC).isoformat(),
            "venue_id": str(self.venue_id) if self.venue_id else None,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# The response body comes back as JSON text and goes out as it is: no decode and re-encode.
CHECKIN_SQL = text("""
    SELECT r ->> 'outcome' AS outcome, r #>> '{response,status}' AS status, (r -> 'response')::text AS body
    FROM checkin(:user, :key, :fingerprint, :lon, :lat, :accuracy_m, :observed_at, :venue_id, :device_id, :mocked,
                 :reason, CAST(:detail AS jsonb), :max_speed_kmh, make_interval(secs => :cooldown_s),
                 CAST(ROW(:match_accuracy_cap_m, :nearest_venue_radius_m) AS venue_match_limits)) AS r
""")

# In-flight lock and rate limit in one round trip.
ADMIT_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return {'in_flight', 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {'limited', redis.call('TTL', KEYS[2])}
end
return {'ok', 0}
"""
IN_FLIGHT_TTL_MS = 30_000


def _keys(user: str, key: str) -> tuple[str, str]:
    return f"ck:inflight:{user}:{key}", f"ck:rate:{user}"


async def check_in(
    conn: AsyncConnection,
    redis: RedisState,
    settings: Settings,
    *,
    user: str,
    key: str,
    req: CheckinRequest,
    now: datetime,
) -> str:
    """Returns the response body as JSON text (the same text for a replay)."""
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
    redis_ok = redis.usable
    if redis_ok:
        try:
            verdict, retry_after = await redis.client.eval(
                ADMIT_LUA,
                2,
                in_flight_key,
                rate_key,
                settings.checkin_rate_per_minute,
                60,
                IN_FLIGHT_TTL_MS,
            )
        except (RedisError, OSError) as exc:
            redis.failed(exc)
            redis_ok = False
        else:
            redis.answered()
            if verdict == "in_flight":
                raise Conflict("a request with this Idempotency-Key is still running", code="idempotency_in_progress")
            if verdict == "limited":
                raise TooManyRequests(retry_after, "too many check-ins; try again later")

    params = {
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
    try:
        row = (await conn.execute(CHECKIN_SQL, params)).one()
    finally:
        if redis_ok:
            await _release(redis, in_flight_key)

    if row.outcome == "key_reused":
        raise key_reused("check-in")
    body: str = row.body
    return body


async def _release(redis: RedisState, in_flight_key: str) -> None:
    try:
        await redis.client.delete(in_flight_key)
    except (RedisError, OSError) as exc:
        redis.failed(exc)
