"""Faults under load, against the service as deployed: PostgreSQL restarted, a worker killed, Redis
stopped. Each test serves the API with `checkin-offers serve` (processes of its own) against a
private PostgreSQL cluster and Redis (tests/servers.py, never the machine's shared servers), drives a
bounded load of check-ins and the redemptions of the codes they unlock, records every request and
answer, and then checks the record:

- no answer is a 500: while the database is away the answer is 503 `database_unavailable`, as
  problem+json with Retry-After;
- every 2xx is in the database (a check-in by its id and Idempotency-Key, a redemption by its id);
- a retry with the same Idempotency-Key returns a 2xx's answer again; a request answered 503 or not
  at all gets one answer from its retries, the same every time, and has exactly one row;
- the service recovers by itself, without a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import psycopg.errors
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker

import core.db
from api import problems
from api.deps import HotConnection, Session
from core.db import database_away, make_engine
from core.settings import get_settings
from offers.checkin import IN_FLIGHT_TTL_MS
from tests.factories import World, offer_body
from tests.servers import (
    PostgresServer,
    RedisServer,
    free_port,
    missing_binaries,
    postgres_server,
    redis_server,
)

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / ".venv" / "bin" / "checkin-offers"
TEMPLATE = "faults_template"
LOAD_THREADS = 6
MAX_REQUESTS = 1500  # the load's bound, far above what a test's few seconds send


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --------------------------------------------------------------------------- servers and service


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One private cluster for the module (initdb once), with a migrated template database that
    each test copies into a database of its own."""
    from core.migrate import migrate

    if missing := missing_binaries():
        pytest.fail(f"the fault tests run private servers and need {missing}: `make test` installs them")
    with postgres_server() as server:
        migrate(server.database_url(TEMPLATE))
        yield server


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    name = f"faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(postgres.url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return postgres.database_url(name)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    if missing := missing_binaries():
        pytest.fail(f"the fault tests run private servers and need {missing}: `make test` installs them")
    with redis_server() as server:
        yield server


class Service:
    """`checkin-offers serve` in a session of its own on a free loopback port."""

    def __init__(self, database_url: str, redis_url: str, workers: int, log: Path, **settings: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = log
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CHECKIN_", "PROMETHEUS_"))},
            "CHECKIN_ENV": "test",
            "CHECKIN_JWT_SECRET": os.environ["CHECKIN_JWT_SECRET"],  # tests/conftest.py: tokens minted here pass
            "CHECKIN_DATABASE_URL": database_url,
            "CHECKIN_REDIS_URL": redis_url,
            "CHECKIN_REDIS_TIMEOUT_S": "0.5",  # a busy 2-core machine must not make a healthy Redis look down
            **{f"CHECKIN_{name.upper()}": value for name, value in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(SERVE), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers in a process group of their own, to end them all
            )
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=self.base_url, timeout=2) as http:
            while True:
                try:
                    if http.get("/healthz").status_code == 200 and len(self.worker_pids()) == self.workers:
                        return
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start:\n{self.log_tail()}")
                time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """The serving processes: the supervisor's children that multiprocessing spawned (from /proc)."""
        if self.proc is None:
            return []
        if self.workers == 1:
            return [self.proc.pid]
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            if parent == self.proc.pid and "spawn_main" in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        # Whatever is left of its session (a worker that outlived the supervisor): our own process group.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def serving(database_url: str, redis_url: str, *, workers: int = 2, **settings: str) -> Iterator[Service]:
    directory = Path(tempfile.mkdtemp(prefix="checkin-faults-"))
    service = Service(database_url, redis_url, workers, directory / "service.log", **settings)
    try:
        service.start()
        yield service
    finally:
        service.stop()
        print(f"--- service log (tail) ---\n{service.log_tail()}")  # shown when the test fails
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()


# --------------------------------------------------------------------------- load and record


@dataclass
class Exchange:
    """One request as sent, and what came back: a status, or none at all (`error`)."""

    kind: str  # "checkin" or "redemption"
    path: str
    subject: str  # the token's sub: the check-in's user, the redemption's staff member
    headers: dict[str, str]
    body: dict[str, Any]
    started: float = 0.0
    status: int | None = None
    content: bytes = b""
    response_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.content)

    def send(self, http: httpx.Client) -> Exchange:
        """Sends the same request again (same key, same body) and returns the new exchange."""
        again = Exchange(self.kind, self.path, self.subject, self.headers, self.body, started=time.monotonic())
        try:
            r = http.post(self.path, json=self.body, headers=self.headers)
        except httpx.TransportError as exc:
            again.error = f"{type(exc).__name__}: {exc}"
        else:
            again.status, again.content, again.response_headers = r.status_code, r.content, dict(r.headers)
        return again


class Load:
    """A closed loop of check-ins, each by a new user at the campaign's venue, and the redemption of
    every code a check-in unlocks, from a few threads, until stopped (or MAX_REQUESTS)."""

    def __init__(self, world: World, base_url: str, venue: dict[str, Any], staff_merchant: str) -> None:
        self.world = world
        self.base_url = base_url
        self.venue = venue
        self.merchant = staff_merchant
        self.record: list[Exchange] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._drive, daemon=True) for _ in range(LOAD_THREADS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for(self, more: int, timeout_s: float = 15) -> None:
        """Until `more` further requests have been answered (or not), so each phase of a test sees
        some load however busy the machine is."""
        with self.lock:
            target = len(self.record) + more
        deadline = time.monotonic() + timeout_s
        while len(self.record) < target and time.monotonic() < deadline:
            time.sleep(0.02)

    def _keep(self, exchange: Exchange) -> bool:
        with self.lock:
            self.record.append(exchange)
            return len(self.record) < MAX_REQUESTS

    def _drive(self) -> None:
        staff_sub = f"staff-{uuid.uuid4().hex[:8]}"
        staff = self.world.headers("merchant_staff", staff_sub, self.merchant)
        lon, lat = self.venue["center"]
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stopping.is_set():
                sub = f"user-{uuid.uuid4().hex[:12]}"
                checkin = Exchange(
                    "checkin",
                    "/v1/checkins",
                    sub,
                    {**self.world.user(sub), "Idempotency-Key": str(uuid.uuid4())},
                    {"lat": lat, "lon": lon, "accuracy_m": 10, "observed_at": datetime.now(UTC).isoformat()},
                ).send(http)
                if not self._keep(checkin):
                    return
                for offer in checkin.json()["unlocked"] if checkin.ok else []:
                    redemption = Exchange(
                        "redemption",
                        "/v1/redemptions",
                        staff_sub,
                        {**staff, "Idempotency-Key": str(uuid.uuid4())},
                        {"code": offer["code"], "venue_id": self.venue["id"]},
                    ).send(http)
                    if not self._keep(redemption):
                        return

    def statuses(self) -> Counter[int | str]:
        return Counter(e.status if e.status is not None else "no answer" for e in self.record)


@contextmanager
def world_at(service: Service) -> Iterator[tuple[World, dict[str, Any], str]]:
    """A client for the test's own requests, and a venue whose campaign unlocks a code at every check-in."""
    with httpx.Client(base_url=service.base_url, timeout=10) as http:
        world = World(http, get_settings())
        merchant = world.merchant()
        venue = world.venue(merchant)
        world.campaign(merchant, [venue["id"]], [offer_body(total_limit=100_000)])
        yield world, venue, merchant.id


def settle(http: httpx.Client, exchange: Exchange, deadline: float) -> Exchange:
    """The request's answer once the service is back: sent again with its key until it is final. A
    409 `idempotency_in_progress` is not final: a request that was running in a killed worker keeps
    its key locked in Redis until the lock's time to live has passed."""
    while True:
        answer = exchange.send(http)
        in_progress = answer.status == 409 and answer.json()["code"] == "idempotency_in_progress"
        if not (in_progress or answer.status == 503 or answer.error) or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def check_the_record(load: Load, service: Service, database_url: str, *, allowed: set[int | str]) -> None:
    record = load.record
    statuses = load.statuses()
    assert statuses[201] >= 60, statuses  # the load ran
    assert set(statuses) <= allowed, statuses  # never a 500

    for exchange in record:
        if exchange.status == 503:
            assert exchange.response_headers["content-type"] == "application/problem+json", exchange.content
            problem = exchange.json()
            assert problem["code"] == "database_unavailable", problem
            assert problem["outcome"] in ("not_applied", "unknown"), problem
            assert 1 <= int(exchange.response_headers["retry-after"]) <= 5, exchange.response_headers

    # Every 2xx is in the database.
    answered = [e for e in record if e.ok]
    checkin_ids = {e.json()["id"] for e in answered if e.kind == "checkin"}
    redemption_ids = {e.json()["id"] for e in answered if e.kind == "redemption"}
    with psycopg.connect(libpq(database_url), autocommit=True) as db:
        found = {str(r[0]) for r in db.execute("SELECT id FROM checkins WHERE id = ANY(%s)", (list(checkin_ids),))}
        assert found == checkin_ids, f"{len(checkin_ids - found)} check-ins answered 201 are not in the database"
        keys = {(e.subject, e.headers["Idempotency-Key"]) for e in answered if e.kind == "checkin"}
        stored = set(
            db.execute(
                "SELECT scope, key FROM idempotency_keys WHERE key = ANY(%s)", ([key for _, key in keys],)
            ).fetchall()
        )
        assert keys <= stored, f"{len(keys - stored)} check-ins answered 201 have no stored answer"
        found = {
            str(r[0]) for r in db.execute("SELECT id FROM redemptions WHERE id = ANY(%s)", (list(redemption_ids),))
        }
        assert found == redemption_ids, f"{len(redemption_ids - found)} redemptions answered 201 are not recorded"

    # Retries with the same key: the 2xx's answer again; one answer for the rest, the same twice.
    deadline = time.monotonic() + IN_FLIGHT_TTL_MS / 1000 + 10
    with httpx.Client(base_url=service.base_url, timeout=10) as http, ThreadPoolExecutor(4) as pool:
        first = list(pool.map(lambda e: settle(http, e, deadline), record))
        unsettled = [(e, a) for e, a in zip(record, first, strict=True) if not e.ok]
        second = list(pool.map(lambda pair: pair[0].send(http), unsettled))
    for exchange, answer in zip(record, first, strict=True):
        assert answer.status == 201, (exchange.kind, exchange.status, answer.status, answer.content)
        if exchange.ok:
            assert answer.json() == exchange.json(), "a retry with the key got another answer than the 201"
    for (_, answer), again in zip(unsettled, second, strict=True):
        assert (again.status, again.json()) == (answer.status, answer.json()), "two retries, two answers"

    # Exactly one row per request, whatever its first answer was.
    final = dict(zip(map(id, record), first, strict=True))
    with psycopg.connect(libpq(database_url), autocommit=True) as db:
        users = [e.subject for e in record if e.kind == "checkin"]
        rows = dict(
            db.execute(
                "SELECT user_id, array_agg(id::text) FROM checkins WHERE user_id = ANY(%s) GROUP BY user_id", (users,)
            ).fetchall()
        )
        for exchange in (e for e in record if e.kind == "checkin"):
            assert rows.get(exchange.subject) == [final[id(exchange)].json()["id"]], exchange.subject
        unlocks = [e.json()["unlock_id"] for e in first if e.kind == "redemption"]
        counts = dict(
            db.execute(
                "SELECT unlock_id::text, count(*) FROM redemptions WHERE unlock_id = ANY(%s::uuid[]) GROUP BY 1",
                (unlocks,),
            ).fetchall()
        )
        assert counts == dict.fromkeys(unlocks, 1), "a code redeemed more than once"


def burst(base_url: str, venue: dict[str, Any], world: World, n: int = 32) -> Counter[int | str]:
    """n check-ins at once from 8 clients: enough to draw every pooled connection of every worker."""
    lon, lat = venue["center"]

    def one(_: int) -> int | str:
        body = {"lat": lat, "lon": lon, "accuracy_m": 10, "observed_at": datetime.now(UTC).isoformat()}
        headers = {**world.user(), "Idempotency-Key": str(uuid.uuid4())}
        try:
            return httpx.post(f"{base_url}/v1/checkins", json=body, headers=headers, timeout=10).status_code
        except httpx.TransportError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(one, range(n)))


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def readiness(base_url: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    r = httpx.get(f"{base_url}/readyz", timeout=30)
    return r.status_code, r.json(), time.monotonic() - started


# --------------------------------------------------------------------------- the faults


def test_postgresql_restarted_mid_load_answers_503_never_500_and_loses_no_commit(
    postgres: PostgresServer, database: str, redis: RedisServer
) -> None:
    with serving(database, redis.url) as service, world_at(service) as (world, venue, merchant):
        with Load(world, service.base_url, venue, merchant) as load:
            load.wait_for(60)
            postgres.restart("fast")  # its backends are told to end, in the middle of their statements
            back = time.monotonic()
            load.wait_for(60)
        statuses = load.statuses()
        assert statuses[503] > 0, statuses  # the restart did hit requests in flight
        # The pool replaced its connections from before the restart without failing a request.
        after = Counter(e.status for e in load.record if e.started > back)
        assert set(after) == {201}, after
        check_the_record(load, service, database, allowed={201, 503})

        # While it is down: a quick 503 with Retry-After, and /readyz says so at once.
        postgres.stop()
        try:
            started = time.monotonic()
            r = world.checkin(world.user(), *venue["center"])
            assert time.monotonic() - started < 1.5
            problem = r.json()
            assert (r.status_code, problem["code"], problem["outcome"]) == (503, "database_unavailable", "not_applied")
            assert r.headers["retry-after"] == "2" and r.headers["content-type"] == "application/problem+json"
            status, body, took = readiness(service.base_url)
            assert (status, body["status"]) == (503, "unavailable") and body["checks"]["database"].startswith("down")
            assert took < 1.5, f"/readyz took {took:.2f} s with the database down"
        finally:
            postgres.start()

        # Back: every pooled connection, in every worker, is a dead one; none fails a request.
        assert burst(service.base_url, venue, world) == Counter({201: 32})
        status, body, _ = readiness(service.base_url)
        assert (status, body["checks"]["database"]) == (200, "ok")


def test_a_worker_killed_mid_load_loses_no_commit_and_is_replaced(
    postgres: PostgresServer, database: str, redis: RedisServer
) -> None:
    with serving(database, redis.url, workers=2) as service, world_at(service) as (world, venue, merchant):
        workers = service.worker_pids()
        with Load(world, service.base_url, venue, merchant) as load:
            load.wait_for(60)
            victim = max(workers, key=cpu_seconds)  # the one serving most: it has requests in flight
            os.kill(victim, signal.SIGKILL)
            load.wait_for(60)
        statuses = load.statuses()
        assert statuses["no answer"] > 0, statuses  # the kill did cut requests off

        deadline = time.monotonic() + 15
        while len(replaced := service.worker_pids()) < 2 or victim in replaced:
            assert time.monotonic() < deadline, "the supervisor did not start a new worker"
            time.sleep(0.1)
        check_the_record(load, service, database, allowed={201, "no answer"})
        assert burst(service.base_url, venue, world) == Counter({201: 32})


def test_redis_stopped_mid_load_fails_nothing_and_its_limits_come_back(
    postgres: PostgresServer, database: str, redis: RedisServer
) -> None:
    with (
        serving(database, redis.url, workers=1, checkin_rate_per_minute="3") as service,
        world_at(service) as (world, venue, merchant),
    ):
        lon, lat = venue["center"]
        with Load(world, service.base_url, venue, merchant) as load:
            load.wait_for(60)
            redis.stop()
            load.wait_for(40)
            status, body, _ = readiness(service.base_url)
            assert (status, body["status"]) == (200, "degraded") and body["checks"]["redis"].startswith("down")
            unlimited = world.user()
            assert [world.checkin(unlimited, lon, lat).status_code for _ in range(4)] == [201] * 4
            redis.start()
            load.wait_for(40)
        check_the_record(load, service, database, allowed={201})

        # The limits come back by themselves: each worker tries Redis again after a short pause.
        deadline = time.monotonic() + 10
        while True:
            status, body, _ = readiness(service.base_url)
            limited = world.user()
            answers = [world.checkin(limited, lon, lat) for _ in range(4)]
            if body["checks"]["redis"] == "ok" and answers[-1].status_code == 429:
                break
            assert time.monotonic() < deadline, ([a.status_code for a in answers], body)
            time.sleep(0.5)
        assert [a.status_code for a in answers[:3]] == [201] * 3
        assert int(answers[-1].headers["retry-after"]) >= 1


# --------------------------------------------------------------------------- the 503 itself


@pytest.mark.parametrize(
    ("error", "away"),
    [
        (psycopg.OperationalError("connection failed: Connection refused"), True),  # no server answer
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.TooManyConnections("sorry, too many clients already"), True),
        (psycopg.errors.ConnectionFailure("connection failure"), True),
        (sa_exc.TimeoutError("QueuePool limit of size 4 overflow 0 reached"), True),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("closed"), connection_invalidated=True), True),
        (sa_exc.OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating")), True),
        (psycopg.errors.SerializationFailure("could not serialize access"), False),  # the request's to retry
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (sa_exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")), False),
        (sa_exc.ProgrammingError("SELECT", {}, psycopg.errors.UndefinedTable("no such table")), False),
        (ValueError("not a database error"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_what_counts_as_the_database_being_away(error: Exception, away: bool) -> None:
    assert database_away(error) is away


def terminate(database_url: str, pid: int) -> None:
    """Ends one backend, as a restart would, and waits until it is gone."""
    with psycopg.connect(libpq(database_url), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)


def answer_with_lost_connection(database_url: str, monkeypatch: pytest.MonkeyPatch, app: FastAPI) -> httpx.Response:
    """POST /lose on `app`, served in process by the request dependencies of core/db.py on an engine
    of the private database."""

    async def run() -> httpx.Response:
        engine = make_engine(database_url, 2)
        monkeypatch.setattr(core.db, "get_engine", lambda: engine)
        monkeypatch.setattr(core.db, "get_sessionmaker", lambda: async_sessionmaker(engine, expire_on_commit=False))
        problems.install(app)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                return await client.post("/lose")
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_commit_that_fails_answers_503_never_2xx(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler wrote and succeeded; its connection is gone before the commit. The answer is 503
    with the outcome unknown (the commit was sent, or would have been), never the handler's 201."""

    app = FastAPI()

    @app.post("/lose", status_code=201)
    async def lose(session: Session) -> dict[str, bool]:
        await session.execute(text("CREATE TABLE IF NOT EXISTS fault_probe (n int)"))
        await session.execute(text("INSERT INTO fault_probe VALUES (1)"))
        await asyncio.to_thread(terminate, database, await session.scalar(text("SELECT pg_backend_pid()")))
        return {"written": True}

    r = answer_with_lost_connection(database, monkeypatch, app)
    assert r.status_code == 503, r.text
    assert (r.json()["code"], r.json()["outcome"]) == ("database_unavailable", "unknown")
    assert r.headers["retry-after"] == "2" and r.headers["content-type"] == "application/problem+json"
    with psycopg.connect(libpq(database), autocommit=True) as db:
        assert db.execute("SELECT to_regclass('fault_probe')").fetchone() == (None,)  # nothing was committed


def test_a_hot_path_statement_on_a_lost_connection_answers_503_with_the_outcome_unknown(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    app = FastAPI()

    @app.post("/lose", status_code=201)
    async def lose(conn: HotConnection) -> dict[str, bool]:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await asyncio.to_thread(terminate, database, pid)
        await conn.execute(text("SELECT 1"))
        return {"written": True}

    r = answer_with_lost_connection(database, monkeypatch, app)
    assert r.status_code == 503, r.text
    problem = r.json()
    assert (problem["code"], problem["outcome"]) == ("database_unavailable", "unknown")
    assert "same Idempotency-Key" in problem["detail"]
