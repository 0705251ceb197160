"""Location retention: a check-in's position, accuracy and device id are kept for a while, then purged.

Accepted check-ins keep them CHECKIN_RAW_LOCATION_DAYS (30), rejected ones CHECKIN_FRAUD_REVIEW_DAYS
(90), for fraud review, together with the figures of their detail (speed, distance, accuracy). After
that a check-in keeps its venue, status, reason, time, mock flag, an accuracy bucket
(accuracy_bucket()) and its distance to the venue's fence at the time of the purge, rounded to
10 m, so fraud review still lists it. A rejection's detail keeps only its `signal` (why a fix
was taken as mocked), no figure.

Nothing the service computes needs a purged position:
- Stats are kept as counters and sums written at check-in time (campaign_counters,
  campaign_effect...), never recomputed from positions, so they read the same before and after.
- The speed check (too_fast()) compares a fix with the user's nearest accepted fixes. A fix is at
  most CHECKIN_MAX_FIX_AGE_S old when it arrives, so a purged neighbour is at least
  CHECKIN_RAW_LOCATION_DAYS minus that away in time; settings refuse a retention so short that two
  fixes that far apart in time could be too fast anywhere on Earth. A purged fix gives the check
  no speed (NULL distance) and so never rejects, and it could not have rejected anyway.

The purge runs in batches of BATCH rows, oldest first, each its own short transaction: rows are
claimed `FOR UPDATE SKIP LOCKED`, so purges running at once share the work and never wait on each
other, and check-ins, which only insert new rows and read old ones, never wait on a purge. It runs
every PURGE_EVERY_S inside `serve` in one process at a time (a session advisory lock, as the webhook
worker leads; CHECKIN_PRIVACY_PURGE=false turns it off) and as `checkin-offers purge` for cron.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from core.settings import Settings

log = logging.getLogger(__name__)

BATCH = 1000
PURGE_EVERY_S = 3600.0
# Inside `serve` the purge shares the machine with the requests: after each full batch it rests three
# times as long as the batch took, so a backlog (a first start on a long history) is worked off with at
# most a quarter of one core. `checkin-offers purge`, for cron, does not rest.
SERVE_REST_RATIO = 3.0
LEADER_LOCK_SQL = text("SELECT pg_try_advisory_lock(hashtext('checkin-offers'), hashtext('location purge'))")
LEADER_UNLOCK_SQL = text("SELECT pg_advisory_unlock(hashtext('checkin-offers'), hashtext('location purge'))")

# What a check-in keeps of its position once purged or erased (also used by erasure.py): the SET
# list of an UPDATE of checkins `c`. A check-in that matched no venue keeps no distance.
FORGET_POSITION = """
    lon = NULL, lat = NULL, accuracy_m = NULL, device_id = NULL,
    accuracy_bucket = coalesce(c.accuracy_bucket, accuracy_bucket(c.accuracy_m)),
    distance_to_fence_m = coalesce(c.distance_to_fence_m, (
        SELECT round(venue_distance_m(v, ST_SetSRID(ST_MakePoint(c.lon, c.lat), 4326)::geography)::numeric, -1)::float
        FROM venues v WHERE v.id = c.venue_id)),
    detail = CASE WHEN c.detail ? 'signal' THEN jsonb_build_object('signal', c.detail -> 'signal') END
"""

# One batch: the oldest rows past their retention, on the partial index of rows still holding one.
PURGE_BATCH_SQL = text(f"""
    WITH due AS (
        SELECT c.id FROM checkins c
        WHERE c.lon IS NOT NULL
          AND c.observed_at < now() - make_interval(days => least(:raw_days, :review_days))
          AND c.observed_at < now() - make_interval(
                  days => CASE WHEN c.status = 'accepted' THEN :raw_days ELSE :review_days END)
        ORDER BY c.observed_at
        LIMIT :batch
        FOR UPDATE OF c SKIP LOCKED)
    UPDATE checkins c SET {FORGET_POSITION}
    FROM due WHERE c.id = due.id
""")


async def purge_batch(conn: AsyncConnection, settings: Settings, batch: int = BATCH) -> int:
    """Purge up to `batch` check-ins past their retention in one transaction: how many were purged."""
    async with conn.begin():
        params = {"raw_days": settings.raw_location_days, "review_days": settings.fraud_review_days, "batch": batch}
        return (await conn.execute(PURGE_BATCH_SQL, params)).rowcount


async def purge_positions(
    conn: AsyncConnection,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
    rest_ratio: float = 0.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Purge every check-in past its retention, a batch at a time: how many were purged.
    `progress` is told the running total after each batch that purged something; after each full
    batch (more may be due) the purge sleeps `rest_ratio` times as long as the batch took."""
    purged = 0
    while True:
        started = time.monotonic()
        done = await purge_batch(conn, settings, batch)
        purged += done
        if done and progress is not None:
            progress(purged)
        if done < batch:
            return purged
        if rest_ratio:
            await sleep(rest_ratio * (time.monotonic() - started))


async def purge_as_leader(conn: AsyncConnection, settings: Settings) -> int | None:
    """One purge, if no other process is purging now: how many were purged, None when another leads."""
    leading = bool((await conn.execute(LEADER_LOCK_SQL)).scalar())
    await conn.commit()
    if not leading:
        return None
    try:
        return await purge_positions(conn, settings, rest_ratio=SERVE_REST_RATIO)
    finally:
        await conn.execute(LEADER_UNLOCK_SQL)
        await conn.commit()


async def purge_forever(settings: Settings) -> None:
    """The job `serve` runs: a purge every PURGE_EVERY_S, in one process at a time, on a connection
    of its own (not one of the request pool's), so requests never wait for it."""
    engine = create_async_engine(settings.database_url, poolclass=NullPool, hide_parameters=True)
    try:
        while True:
            try:
                async with engine.connect() as conn:
                    purged = await purge_as_leader(conn, settings)
                if purged:
                    log.info("purged the position of %d check-ins past their retention", purged)
            except Exception:  # the database may be away, or a migration not run yet: try again later
                log.exception("location purge failed; trying again later")
            await asyncio.sleep(PURGE_EVERY_S * random.uniform(0.9, 1.1))  # noqa: S311 - spreads processes, no secret
    finally:
        await engine.dispose()
