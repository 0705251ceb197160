"""Redis for hot, short-lived state: rate limits, velocity, in-flight idempotency locks.

Every call has a short timeout and failures degrade instead of failing the request:
PostgreSQL stays the source of truth, so a slow or absent Redis costs protection, not data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.settings import get_settings

log = logging.getLogger(__name__)


class RedisState:
    """The client, and how Redis has been answering. After a few failures in a row Redis is
    skipped for a moment (a silent Redis would otherwise cost every request a full timeout);
    one slow answer on a busy machine does not trip it. /readyz reports the degradation."""

    FAILURES_BEFORE_SKIPPING = 3
    SKIP_FOR_S = 2.0

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._to_delete: list[str] = []
        self._deleting: asyncio.Task[None] | None = None

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    @client.setter
    def client(self, client: aioredis.Redis) -> None:
        self._client = client
        self.failures_in_a_row = 0  # a new client starts with a clean record
        self.last_failure_at: float | None = None

    def failed(self, exc: Exception) -> None:
        self.failures_in_a_row += 1
        self.last_failure_at = time.monotonic()
        log.warning("redis unavailable, degrading: %s", exc)

    def answered(self) -> None:
        self.failures_in_a_row = 0

    def delete_soon(self, key: str) -> None:
        """Deletes `key` from a task of its own, with the other keys handed over meanwhile in the same
        command: off the caller's latency path, out of reach of its cancellation, and one round
        trip for all the keys that a busy moment hands over."""
        self._to_delete.append(key)
        task = self._deleting
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._deleting = asyncio.get_running_loop().create_task(self._delete_handed_over())

    async def _delete_handed_over(self) -> None:
        while self._to_delete:
            keys, self._to_delete = self._to_delete, []
            try:
                await self.client.delete(*keys)
            except (RedisError, OSError) as exc:
                self.failed(exc)  # the keys expire on their own

    @property
    def usable(self) -> bool:
        if self.failures_in_a_row < self.FAILURES_BEFORE_SKIPPING or self.last_failure_at is None:
            return True
        return time.monotonic() - self.last_failure_at >= self.SKIP_FOR_S


@lru_cache
def get_redis() -> RedisState:
    settings = get_settings()
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),  # no hidden retries: a slow Redis is skipped, not waited for
        decode_responses=True,
        max_connections=64,
        health_check_interval=0,
    )
    return RedisState(client)


__all__ = ["RedisError", "RedisState", "get_redis"]
