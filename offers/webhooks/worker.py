"""The delivery worker: publishes the outbox, sends due deliveries, retries, disables endpoints
that keep failing, and watches running campaigns for sample-ratio alerts.

It runs inside every `checkin-offers serve` process (CHECKIN_WEBHOOK_WORKER, on by default) and as
`checkin-offers worker`; wherever it runs, one process at a time leads, holding a PostgreSQL
session advisory lock on a connection of its own (not one of the request pool's). The others try
again every few seconds, so a leader that dies (its connection closes, and the lock with it) is
replaced within seconds.

- Due deliveries are claimed in small batches (`FOR UPDATE SKIP LOCKED`) and leased for a minute,
  in a short transaction; the HTTP attempts run outside any transaction, up to 16 at once, and
  each result is recorded in a transaction of its own. A leader that dies mid-attempt leaves
  leases that the next leader clears: the message is sent again. At least once per message.
- A failed attempt is retried after a delay drawn uniformly from 0 to min(cap, base * 2^n) (full
  jitter; 5 s doubling up to an hour by default) until the delivery is 24 hours old; the attempt
  after that is its last.
- An endpoint whose attempts have all failed for 3 days is disabled, with the reason kept for the
  merchant, and its pending deliveries are given up. Any success resets the clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from core.settings import Settings
from offers.webhooks import outbox, sender
from offers.webhooks.sender import Outcome

log = logging.getLogger(__name__)

# A session-level advisory lock, in the two-number lock space under a key of its own.
LEADER_LOCK_SQL = text("SELECT pg_try_advisory_lock(hashtext('checkin-offers'), hashtext('webhook worker'))")
LEADER_RETRY_S = 5.0
LEASE = timedelta(seconds=60)  # longer than an attempt can take (sender.TIMEOUT_S)
CLAIM_BATCH = 16
MAX_IN_FLIGHT = 16
SRM_EVERY_S = 300.0
PURGE_EVERY_S = 3600.0
DISABLE_AFTER = timedelta(days=3)
_rng = random.SystemRandom()

# Leases of a leader that is gone: its attempts died with it.
CLEAR_LEASES_SQL = text(
    "UPDATE webhook_deliveries SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL"
)
CLAIM_SQL = text("""
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
          AND EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.id = d.endpoint_id AND w.disabled_at IS NULL)
        ORDER BY d.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED)
    UPDATE webhook_deliveries d SET lease_until = now() + :lease
    FROM due, webhook_endpoints w, webhook_messages m
    WHERE d.id = due.id AND w.id = d.endpoint_id AND m.id = d.message_id
    RETURNING d.id, d.attempts, d.lease_until, d.endpoint_id, w.url, w.secret, m.id AS message_id, m.body
""")
# The attempt's result, only while this lease holds and the delivery is still pending (an endpoint
# disabled or deleted meanwhile has given it up).
RECORD_SQL = text("""
    WITH d AS (
        UPDATE webhook_deliveries SET
            attempts = attempts + 1,
            lease_until = NULL,
            last_status_code = :status_code,
            last_error = :error,
            status = CASE WHEN :ok THEN 'succeeded' WHEN now() >= retry_until THEN 'failed' ELSE 'pending' END,
            next_attempt_at = CASE WHEN :ok OR now() >= retry_until THEN NULL
                                   ELSE now() + make_interval(secs => :delay_s) END,
            delivered_at = CASE WHEN :ok THEN now() END
        WHERE id = :delivery AND lease_until = :lease AND status = 'pending'
        RETURNING id)
    INSERT INTO webhook_attempts (delivery_id, attempted_at, duration_ms, status_code, error)
    SELECT id, :attempted_at, :duration_ms, :status_code, :error FROM d
    RETURNING delivery_id
""")
SUCCEEDED_SQL = text(
    "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = :endpoint AND failing_since IS NOT NULL"
)
FAILED_SQL = text("""
    UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :attempted_at)
    WHERE id = :endpoint AND disabled_at IS NULL
    RETURNING failing_since, now() AS now
""")
DISABLE_SQL = text("""
    WITH w AS (
        UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = :reason
        WHERE id = :endpoint AND disabled_at IS NULL
        RETURNING id)
    UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, lease_until = NULL,
           last_error = CASE WHEN attempts = 0 THEN 'not sent: the endpoint was disabled' ELSE last_error END
    WHERE endpoint_id IN (SELECT id FROM w) AND status = 'pending'
""")


def retry_delay_s(failed_before: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and min(cap, base * 2^n), n the failures before this one."""
    return rng.uniform(0.0, min(cap_s, base_s * 2.0 ** min(failed_before, 62)))


def disabled_reason(failing_since: datetime, now: datetime, error: str | None) -> str:
    since, now = failing_since.astimezone(UTC), now.astimezone(UTC)
    return (
        f"Disabled on {now:%Y-%m-%d %H:%M} UTC: every delivery attempt failed for 3 days "
        f"(since {since:%Y-%m-%d %H:%M} UTC). The last error: {error or 'none recorded'}."
    )


@dataclass(frozen=True)
class Claimed:
    id: Any
    attempts: int
    lease_until: datetime
    endpoint_id: Any
    url: str
    secret: str
    message_id: Any
    body: str

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"Claimed(id={self.id}, endpoint_id={self.endpoint_id}, attempts={self.attempts})"


async def record(
    conn: AsyncConnection, settings: Settings, delivery: Claimed, outcome: Outcome, attempted_at: datetime
) -> None:
    """One attempt's result, its retry, and the endpoint's health, in the caller's transaction."""
    delay = retry_delay_s(
        delivery.attempts, base_s=settings.webhook_retry_base_s, cap_s=settings.webhook_retry_cap_s, rng=_rng
    )
    recorded = await conn.execute(
        RECORD_SQL,
        {
            "delivery": delivery.id,
            "lease": delivery.lease_until,
            "ok": outcome.ok,
            "status_code": outcome.status_code,
            "error": None if outcome.ok else outcome.error,
            "delay_s": delay,
            "attempted_at": attempted_at,
            "duration_ms": outcome.duration_ms,
        },
    )
    if recorded.first() is None:
        return
    if outcome.ok:
        await conn.execute(SUCCEEDED_SQL, {"endpoint": delivery.endpoint_id})
        return
    health = (await conn.execute(FAILED_SQL, {"endpoint": delivery.endpoint_id, "attempted_at": attempted_at})).first()
    if health is not None and health.now - health.failing_since >= DISABLE_AFTER:
        reason = disabled_reason(health.failing_since, health.now, outcome.error)
        await conn.execute(DISABLE_SQL, {"endpoint": delivery.endpoint_id, "reason": reason})
        log.warning("webhook endpoint %s disabled after failing for 3 days", delivery.endpoint_id)


class Leader:
    """The work of the process holding the lock, on its one connection."""

    def __init__(self, conn: AsyncConnection, client: httpx.AsyncClient, settings: Settings) -> None:
        self.conn, self.client, self.settings = conn, client, settings
        self.db = asyncio.Lock()  # one connection: one transaction at a time
        self.in_flight: set[asyncio.Task[None]] = set()
        self.broken: BaseException | None = None

    async def run(self) -> None:
        async with self.db, self.conn.begin():
            await self.conn.execute(CLEAR_LEASES_SQL)
        next_srm = next_purge = time.monotonic()
        try:
            while True:
                if self.broken is not None:
                    raise self.broken
                async with self.db, self.conn.begin():
                    read = await outbox.fan_out(self.conn, self.settings)
                now = time.monotonic()
                if now >= next_srm:
                    async with self.db, self.conn.begin():
                        await outbox.srm_alerts(self.conn)
                    next_srm = now + SRM_EVERY_S
                if now >= next_purge:
                    async with self.db, self.conn.begin():
                        await outbox.purge_finished(self.conn)
                    next_purge = now + PURGE_EVERY_S
                claimed = await self._claim(min(CLAIM_BATCH, MAX_IN_FLIGHT - len(self.in_flight)))
                for delivery in claimed:
                    task = asyncio.create_task(self._deliver(delivery))
                    self.in_flight.add(task)
                    task.add_done_callback(self._finished)
                if not claimed and read < outbox.BATCH:
                    await asyncio.sleep(self.settings.webhook_poll_s)
        finally:
            for task in self.in_flight:
                task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def _claim(self, limit: int) -> list[Claimed]:
        if limit <= 0:
            return []
        async with self.db, self.conn.begin():
            rows = (await self.conn.execute(CLAIM_SQL, {"limit": limit, "lease": LEASE})).mappings().all()
        return [Claimed(**row) for row in rows]

    async def _deliver(self, delivery: Claimed) -> None:
        attempted_at = datetime.now().astimezone()
        outcome = await sender.attempt(
            self.client,
            url=delivery.url,
            secret=delivery.secret,
            webhook_id=outbox.webhook_id(delivery.message_id),
            body=delivery.body,
            allow_loopback=self.settings.webhook_allow_loopback,
        )
        async with self.db, self.conn.begin():
            await record(self.conn, self.settings, delivery, outcome, attempted_at)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None and self.broken is None:
            self.broken = task.exception()


async def lead_when_possible(settings: Settings) -> None:
    """Forever: become the leader when no other process is, and work while leading."""
    # httpx logs every request's URL at INFO, and a receiver's URL may carry a credential of its own
    # in the query: deliveries are recorded in webhook_attempts instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # hide_parameters: no statement's parameters in an error message or a log line.
    engine = create_async_engine(settings.database_url, poolclass=NullPool, hide_parameters=True)
    client = sender.make_client()
    try:
        while True:
            try:
                async with engine.connect() as conn:
                    leading = bool((await conn.execute(LEADER_LOCK_SQL)).scalar())
                    await conn.commit()
                    if leading:
                        log.info("leading the webhook worker")
                        await Leader(conn, client, settings).run()
            except Exception:  # the database may be away, or a migration not run yet: try again
                log.exception("webhook worker stopped; trying again")
            await asyncio.sleep(LEADER_RETRY_S * _rng.uniform(0.5, 1.5))
    finally:
        await client.aclose()
        await engine.dispose()
