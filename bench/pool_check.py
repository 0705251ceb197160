"""`python -m bench.pool_check`: what checking a pooled connection at checkout costs on the check-in path.

core/db.py checks each connection it takes from the pool, so that one PostgreSQL ended (a restart)
is replaced instead of failing the request that drew it. Three ways are compared (`CheckoutCheck`):

- "socket", the default: one poll() of the connection's socket, no round trip;
- "ping": SQLAlchemy's pool_pre_ping, an empty statement to the server on every checkout;
- "none": no check (a connection the server ended fails one request).

The API is served three times at once as the bench serves it (2 workers, a pool of 4 each,
production settings, RS256 tokens), one per check, each with the same options as `checkin-offers
serve` but the app `bench.pool_app:app`. wrk loads them in turn with `checkin.lua` at saturation, in
rounds whose order rotates so that the machine's drift hits all three alike; every request has a
user and a point of its own (`bench_points`, on a small data set of its own). Reported per check:
median check-ins/s, p50/p99 latency, CPU per check-in of the service and of PostgreSQL, and each
against "none". Results in bench/data/pool-check/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from bench import report
from bench.runners import DATA_DIR, ROOT, LoadResult, Service, ensure_wrk, run_wrk
from bench.seed import QUICK_PLAN, database_url, libpq_url, seed_main_database
from bench.workload import Signer, fresh_users, write_tsv
from core.db import make_engine

CHECKS = ("none", "socket", "ping")
# Its own database (the small data set, with points enough that no request reuses a row) and Redis
# database: nothing another bench run uses.
PLAN = replace(QUICK_PLAN, database="checkin_offers_pool_check", points=40_000, users=100_000)
REDIS_DB = 7
OUT_DIR = DATA_DIR / "pool-check"

SERVE = """
import uvicorn
uvicorn.run("bench.pool_app:app", host="127.0.0.1", port={port}, workers={workers}, loop="uvloop",
            http="api.limits:HttpToolsWithHeadLimit", access_log=False, log_level="warning", proxy_headers=False)
"""


class VariantService(Service):
    """The service with one checkout check, started and stopped like runners.Service; ready once /readyz
    answers 200 (degraded included: a function source edited but not yet pinned in a revision does not
    matter here)."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path, check: str) -> None:
        super().__init__(env | {"BENCH_CHECKOUT_CHECK": check}, workers, log_path, ready_states=("ready", "degraded"))
        self.check = check
        self.argv = [sys.executable, "-c", SERVE.format(port=self.port, workers=workers)]


def checkin_rows(url: str, signer: Signer, progress: Progress) -> tuple[Path, int]:
    """checkins.tsv of this bench (token, lat, lon, accuracy): one fresh user per bench point."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        points = conn.execute("SELECT lat, lon, accuracy_m FROM bench_points ORDER BY id").fetchall()
        users = fresh_users(conn, PLAN.users, len(points))
    task = progress.add_task(f"RS256 tokens for {len(points):,} users", total=len(points))
    rows = []
    for i, (user, (lat, lon, accuracy)) in enumerate(zip(users, points, strict=True)):
        rows.append((signer.token(f"bench-user-{user}", "app_user"), lat, lon, accuracy))
        if i % 1000 == 0:
            progress.update(task, completed=i)
    progress.update(task, completed=len(points), visible=False)
    return write_tsv(OUT_DIR / "checkins.tsv", rows), len(rows)


def service_env(url: str, signer: Signer, pool_size: int) -> dict[str, str]:
    redis_url = make_url(os.environ.get("CHECKIN_REDIS_URL", "redis://127.0.0.1:6379/0")).set(database=str(REDIS_DB))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHECKIN_", "PROMETHEUS_"))}
    return env | {
        "CHECKIN_ENV": "production",
        "CHECKIN_DATABASE_URL": url,
        "CHECKIN_REDIS_URL": redis_url.render_as_string(hide_password=False),
        "CHECKIN_JWT_PUBLIC_KEY": signer.public_pem,
        "CHECKIN_JWT_ALGORITHM": "RS256",
        "CHECKIN_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "CHECKIN_DB_POOL_SIZE": str(pool_size),
        "CHECKIN_CHECKIN_RATE_PER_MINUTE": "1000000",  # far above the load: no 429
    }


async def _checkouts(url: str, check: str, n: int) -> tuple[float, float]:
    """CPU and wall microseconds per checkout and return of a pooled connection, as the hot path
    takes one (autocommit), with no statement: the check is all that differs between the engines."""
    engine = make_engine(url, 1, checkout_check=check)  # type: ignore[arg-type]
    try:
        async with engine.connect():  # opened and warmed outside the timing
            pass
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            conn = await engine.connect()
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.close()
        return (time.process_time() - cpu) * 1e6 / n, (time.perf_counter() - wall) * 1e6 / n
    finally:
        await engine.dispose()


def checkout_costs(url: str, rounds: int, n: int) -> dict[str, dict[str, float]]:
    """Per check, median µs of CPU (this process) and of wall time per checkout, in rotating rounds."""
    costs: dict[str, list[tuple[float, float]]] = {check: [] for check in CHECKS}
    for i in range(rounds):
        for check in CHECKS[i % 3 :] + CHECKS[: i % 3]:
            costs[check].append(asyncio.run(_checkouts(url, check, n)))
    return {
        check: {
            "cpu_us": report.median([c for c, _ in values]),
            "wall_us": report.median([w for _, w in values]),
        }
        for check, values in costs.items()
    }


def summary(runs: list[LoadResult]) -> dict[str, float]:
    return {
        "rps": report.median([r.rps for r in runs]),
        "p50_ms": report.median([r.latency_ms["p50"] for r in runs]),
        "p99_ms": report.median([r.latency_ms["p99"] for r in runs]),
        "api_cpu_ms": report.median([r.cpu_ms["api"] for r in runs]),
        "postgres_cpu_ms": report.median([r.cpu_ms["postgres"] for r in runs]),
        "other_cpu_ms": report.median([r.cpu_ms["other"] for r in runs]),
        "errors": sum(r.errors({201}) for r in runs),
        "requests": sum(r.requests for r in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pool_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of one run per check (default 5)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--checkouts", type=int, default=5000, help="checkouts per check and round, timed in process")
    args = parser.parse_args(argv)
    console = Console()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    wrk = ensure_wrk()
    url = database_url(PLAN.database)
    started = time.monotonic()
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    )
    with progress:
        seed_main_database(PLAN, progress)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("ANALYZE")
            conn.execute("CHECKPOINT")
        task = progress.add_task(f"checkout cost: {args.rounds} rounds × {args.checkouts:,} per check", total=None)
        checkout_us = checkout_costs(url, args.rounds, args.checkouts)
        progress.update(task, visible=False)
        signer = Signer.new()
        data, rows = checkin_rows(url, signer, progress)
        env = service_env(url, signer, args.pool_size)
        offset = 0
        runs: dict[str, list[LoadResult]] = {check: [] for check in CHECKS}
        services = [VariantService(env, args.workers, OUT_DIR / f"service-{c}.log", c) for c in CHECKS]
        try:
            for service in services:
                service.__enter__()

            def load(service: VariantService, name: str, seconds: int) -> LoadResult:
                nonlocal offset
                result = run_wrk(
                    wrk,
                    "checkin.lua",
                    service,
                    name=name,
                    connections=args.connections,
                    duration_s=seconds,
                    progress=progress,
                    data=data,
                    offset=offset,
                )
                offset += result.sent
                return result

            for service in services:
                load(service, f"{service.check}: warm-up", 3)
            for i in range(args.rounds):
                order = services[i % len(services) :] + services[: i % len(services)]
                for service in order:
                    runs[service.check].append(load(service, f"round {i + 1}: {service.check}", args.seconds))
        finally:
            for service in services:
                service.__exit__()
    if offset > rows:
        console.print(f"[yellow]the load used {offset:,} rows of {rows:,}: some users checked in twice[/]")

    results = {
        "command": "python -m bench.pool_check " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "plan": asdict(PLAN),
        "args": vars(args),
        "checkout_us": checkout_us,
        "summary": {check: summary(rs) for check, rs in runs.items()},
        "rounds": {check: [asdict(r) for r in rs] for check, rs in runs.items()},
        "total_s": round(time.monotonic() - started, 1),
    }
    base = results["summary"]["none"]
    table = Table(title=f"check-ins at saturation by checkout check (medians of {args.rounds} × {args.seconds} s)")
    for column in ("check", "check-ins/s", "vs none", "p50 ms", "p99 ms", "API CPU ms", "vs none", "PG CPU ms"):
        table.add_column(column, justify="left" if column == "check" else "right")
    lines = ["| check | check-ins/s | vs none | p50 ms | p99 ms | API CPU ms/check-in | vs none | PG CPU ms |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for check, s in results["summary"].items():
        cells = [
            check,
            f"{s['rps']:,.0f}",
            f"{s['rps'] / base['rps']:.3f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{s['api_cpu_ms']:.3f}",
            f"{s['api_cpu_ms'] / base['api_cpu_ms']:.3f}",
            f"{s['postgres_cpu_ms']:.3f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    rounds = {check: [round(r.rps) for r in rs] for check, rs in runs.items()}
    lines += ["", "check-ins/s of each round: " + "; ".join(f"{c} {v}" for c, v in rounds.items())]
    console.print(table)
    console.print(lines[-1])
    # The check's own cost, from the in-process timing: what it adds to a checkout, and that as a share
    # of the service's CPU per check-in without a check (from the HTTP runs).
    lines += ["", "| check | µs CPU per checkout | added | added wall µs | added / API CPU per check-in |"]
    lines.append("|---|---:|---:|---:|---:|")
    none_us = checkout_us["none"]
    for check, us in checkout_us.items():
        added = us["cpu_us"] - none_us["cpu_us"]
        share = added / (base["api_cpu_ms"] * 1000)
        wall = us["wall_us"] - none_us["wall_us"]
        lines.append(f"| {check} | {us['cpu_us']:.1f} | {added:+.1f} | {wall:+.1f} | {share:+.1%} |")
    console.print("\n".join(lines[-5:]))
    (OUT_DIR / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    (OUT_DIR / "latest.md").write_text(f"# Pool checkout check ({results['date']})\n\n" + "\n".join(lines) + "\n")
    console.print(f"wrote {(OUT_DIR / 'latest.md').relative_to(ROOT)} and latest.json")


if __name__ == "__main__":
    main()
