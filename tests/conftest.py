"""Test set-up: a fresh PostGIS database per run (and per xdist worker), migrated once with
Alembic, a Redis database of its own, and the real service on a loopback port.

Tests are isolated by their data (every test makes its own merchant, venues and users)
rather than by rolled-back transactions: the check-in and redemption commit on their own
connections, and the concurrency tests need real commits.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:8]  # concurrent runs never share a database
_base = make_url(os.environ.get("CHECKIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/checkin_offers"))
TEST_DATABASE_URL = _base.set(database=f"{_base.database}_test_{_run}_{_worker}").render_as_string(hide_password=False)
_redis = make_url(os.environ.get("CHECKIN_REDIS_URL", "redis://127.0.0.1:6379/0"))
# Redis has 16 databases (0-15) unless configured otherwise: a worker number past 15 would be
# "DB index is out of range" and the service would run without Redis. Workers share 10-15
# round robin, which is safe because every test writes keys of its own (fresh users, merchants
# and Idempotency-Keys), as concurrent runs sharing these databases already do.
TEST_REDIS_URL = str(_redis.set(database=str(10 + int(_worker.removeprefix("gw") or 0) % 6)))

os.environ.update(
    {
        "CHECKIN_ENV": "test",
        "CHECKIN_DATABASE_URL": TEST_DATABASE_URL,
        "CHECKIN_REDIS_URL": TEST_REDIS_URL,
        "CHECKIN_JWT_SECRET": "test-secret-for-the-test-suite-only-0123456789",
        # The service's 50 ms Redis timeout is for production. Under a parallel run on a busy
        # machine a healthy Redis can take longer to answer; the service would then skip it, and
        # tests of what Redis does (rate limits, in-flight locks) would see it missing. The tests
        # about Redis timeouts use the production timeout explicitly (tests/test_redis_outage.py).
        "CHECKIN_REDIS_TIMEOUT_S": "5",
        # Webhook receivers in tests listen on 127.0.0.1 (tests/webhook_receiver.py); retries come
        # within a second instead of minutes, so a test sees a receiver recover.
        "CHECKIN_WEBHOOK_ALLOW_LOOPBACK": "true",
        "CHECKIN_WEBHOOK_POLL_S": "0.25",
        "CHECKIN_WEBHOOK_RETRY_BASE_S": "0.2",
        "CHECKIN_WEBHOOK_RETRY_CAP_S": "1",
    }
)
os.environ.pop("CHECKIN_JWT_PUBLIC_KEY", None)
os.environ.pop("CHECKIN_JWKS_URL", None)

pytest_plugins = ["tests.factories", "tests.browser", "tests.webhook_receiver"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def database_url():
    from core.migrate import drop_database, migrate

    drop_database(TEST_DATABASE_URL)
    migrate(TEST_DATABASE_URL)
    yield TEST_DATABASE_URL
    from core.db import get_engine

    get_engine.cache_clear()
    drop_database(TEST_DATABASE_URL)


def own_database(suffix: str) -> Iterator[str]:
    """For a fixture: a migrated database of the test's own beside the suite's (`<suite's>_<suffix>`),
    for what must not see other tests' rows; dropped afterwards."""
    from core.migrate import drop_database, migrate

    url = make_url(TEST_DATABASE_URL)
    url = url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)
    drop_database(url)
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    # Not flushed: keys are per user and per Idempotency-Key, and tests make fresh users.
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def base_url(database_url: str, redis_url: str):
    """The real service (uvicorn, the production event loop and HTTP parser) on a loopback port."""
    import uvicorn

    from api.main import app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def settings(database_url: str):
    from core.settings import get_settings

    return get_settings()


@pytest.fixture
def db(database_url: str):
    """A plain psycopg connection (autocommit) for looking at what the service wrote."""
    import psycopg
    from psycopg.rows import dict_row

    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        yield conn
