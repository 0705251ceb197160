"""Prometheus metrics: requests, check-ins, unlocks, redemptions, idempotency replays, and the state
of the database pool and of Redis, served at /metrics (api/routes/health.py).

`checkin-offers serve --workers N` runs N processes, and a scrape reaches one of them. With more
than one, `serve` sets PROMETHEUS_MULTIPROC_DIR before the workers start (checkin_offers/cli.py):
prometheus-client then keeps every value in a per-process file there, and a scrape adds up the
files of all workers, the files of workers that have exited included, so counters never go back
when a worker is replaced. One process (the tests' server, `serve --workers 1`) keeps them in memory.

The gauges (pool use, Redis skipped) are read from the process when it is scraped. Under several
workers each also writes its own every second (`sample_forever`), and the scrape sums those of the
live workers.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy.pool import QueuePool

from core.db import get_engine
from core.redis import get_redis

# Decided once, when this module is imported, as prometheus-client decides it.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
NAMESPACE = "checkin_offers"
SAMPLE_EVERY_S = 1.0

REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Requests by method, route template and status, and how long they took (its _count counts requests)",
    ["method", "route", "status"],
    namespace=NAMESPACE,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CHECKINS = Counter(
    "checkins",
    "Check-ins by outcome (accepted, rejected) and rejection reason (none when accepted); replays not counted",
    ["outcome", "reason"],
    namespace=NAMESPACE,
)
UNLOCKS = Counter("unlocks", "Offers unlocked by check-ins, group members' unlocks included", namespace=NAMESPACE)
REDEMPTIONS = Counter(
    "redemptions", "Codes redeemed at a till (the API's or the console's); replays not counted", namespace=NAMESPACE
)
REDEMPTION_FAILURES = Counter(
    "redemption_failures",
    "Redemptions refused, by reason (not_found: a code that is not the merchant's, counted as a guess; "
    "already_redeemed, expired, venue_not_in_campaign, rate_limited...)",
    ["reason"],
    namespace=NAMESPACE,
)
IDEMPOTENCY_REPLAYS = Counter(
    "idempotency_replays",
    "Requests answered from a stored Idempotency-Key, by operation",
    ["operation"],
    namespace=NAMESPACE,
)
# livesum: summed over the worker processes alive now.
REDIS_SKIPPED = Gauge(
    "redis_skipped",
    "1 while a process skips Redis after failures in a row (summed over live worker processes)",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out",
    "Database connections in use (summed over live worker processes)",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "db_pool_size",
    "Database connections a pool may hold (CHECKIN_DB_POOL_SIZE, summed over live worker processes)",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)

# Children of REQUEST_SECONDS by (method, route, status): a dict look-up per request instead of
# labels(), which converts and checks its arguments each time. Bounded: the method is one of a few,
# the route a template of this app, the status an HTTP status.
_request_children: dict[tuple[str, str, int], Histogram] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUEST_SECONDS.labels(method, route, str(status))
    child.observe(seconds)


def count_checkin(*, status: str, reason: str | None, unlocks: int, replayed: bool) -> None:
    if replayed:
        IDEMPOTENCY_REPLAYS.labels("checkin").inc()
        return
    CHECKINS.labels(status, reason or "none").inc()
    if unlocks:
        UNLOCKS.inc(unlocks)


def count_redemption(*, replayed: bool) -> None:
    if replayed:
        IDEMPOTENCY_REPLAYS.labels("redemption").inc()
    else:
        REDEMPTIONS.inc()


def count_redemption_failure(reason: str) -> None:
    REDEMPTION_FAILURES.labels(reason).inc()


def sample_resources() -> None:
    """Sets the gauges from this process's pool and Redis state, as they are now."""
    pool = get_engine().pool
    if isinstance(pool, QueuePool):
        POOL_CHECKED_OUT.set(pool.checkedout())
        POOL_SIZE.set(pool.size())
    REDIS_SKIPPED.set(0 if get_redis().usable else 1)


async def sample_forever() -> None:
    """Under several workers: keeps this worker's gauges current for scrapes another worker answers."""
    while True:
        sample_resources()
        await asyncio.sleep(SAMPLE_EVERY_S)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _forget_exited_workers(directory: str) -> None:
    """Drops the live gauges of workers that are gone (killed, or replaced by uvicorn after a crash),
    which could not do it themselves. Their counters stay: they are part of the totals."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is None:
            continue
        pid = int(match[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
        except PermissionError:  # alive, under another user
            pass


def forget_this_process() -> None:
    """At a worker's shutdown: its live gauges leave the sums (its counters stay)."""
    if MULTIPROCESS_DIR:
        mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """The metrics in the Prometheus text format: this process's, or every worker's under several.
    Reads files under several workers: call it off the event loop."""
    if not MULTIPROCESS_DIR:
        return generate_latest(REGISTRY)
    _forget_exited_workers(MULTIPROCESS_DIR)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
