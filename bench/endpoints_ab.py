"""Before/after of the till's redemption and the app's nearby search over HTTP, in one run.

Two source trees (A, the baseline, say `git archive HEAD | tar -x -C /tmp/base`; B, the working
tree by default) each serve as deployed (`checkin-offers serve`, the same venv, the tree first on
PYTHONPATH) on a port of their own, against the same database and Redis. wrk then loads one side at
a time, alternating A B, B A, ... for each endpoint, with a warm-up run of each side first, and the
medians of each side, their ratio (B / A), p99 and the CPU per request (from /proc) are printed.

    .venv/bin/python -m bench.endpoints_ab --database <a seeded bench database> --a /tmp/base [--b .] [--rounds 5]

The database must be a seeded bench database (bench/seed.py: a bench_seed row and bench_points);
codes to redeem are unlocked in it first (as bench/workload.py does), each redeemed once: both sides
take fresh rows of the same file, so a redemption is always a first one (201). Redis database
--redis-db is emptied first. Nothing here is stopped but the services it started.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psycopg
import redis
from rich.progress import Progress

from bench.runners import DATA_DIR, ROOT, LoadResult, Service, ensure_wrk, run_wrk
from bench.seed import database_url, libpq_url
from bench.workload import Signer, redemption_data, write_tsv

ENDPOINTS = {"redeem": ("redeem.lua", 201), "nearby": ("nearby.lua", 200)}


def tree_service(tree: Path, env: dict[str, str], workers: int, log: Path) -> Service:
    """The service from `tree`: its packages come first on the path, before the editable install's."""
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import api.main; print(api.main.__file__)"],
        env=env | {"PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(tree):
        raise SystemExit(f"{tree}: the service would import {found}, not this tree's")
    service = Service(env | {"PYTHONPATH": str(tree)}, workers, log)
    service.argv[0:1] = [
        sys.executable,
        "-P",
        "-c",
        "import sys; from checkin_offers.cli import main; sys.exit(main())",
    ]
    return service


def service_env(database: str, redis_url: str, public_pem: str, pool_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")}
    return env | {
        "CHECKIN_ENV": "production",
        "CHECKIN_DATABASE_URL": database_url(database),
        "CHECKIN_REDIS_URL": redis_url,
        "CHECKIN_JWT_PUBLIC_KEY": public_pem,
        "CHECKIN_JWT_ALGORITHM": "RS256",
        "CHECKIN_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "CHECKIN_DB_POOL_SIZE": str(pool_size),
    }


def nearby_rows(conn: psycopg.Connection, signer: Signer, rows: int) -> Path:
    """nearby.tsv as the bench makes it: positions inside venues, a user (and token) each."""
    points = conn.execute(
        "SELECT lat, lon FROM bench_points WHERE kind = 'inside' ORDER BY id LIMIT %s", (rows,)
    ).fetchall()
    data = [(signer.token(f"ab-user-{i}", "app_user"), lat, lon) for i, (lat, lon) in enumerate(points)]
    return write_tsv(DATA_DIR / "ab-nearby.tsv", data)


def redeem_rows(conn: psycopg.Connection, signer: Signer, codes: int) -> Path:
    """Codes unlocked now, each with a staff member of its merchant (bench/workload.py: redemption_data)."""
    stats_campaign = conn.execute("SELECT facts ->> 'stats_campaign_id' FROM bench_seed").fetchone()
    assert stats_campaign is not None, "not a seeded bench database"
    redeem, _hot, _facts = redemption_data(conn, signer, codes=codes, hot_clients=1, stats_campaign=stats_campaign[0])
    conn.execute("ANALYZE unlocks, checkins")
    return redeem


def summary(runs: list[LoadResult], ok: int) -> dict[str, float]:
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    return {
        "rps": median([r.rps for r in runs]),
        "rps_min": min(r.rps for r in runs),
        "rps_max": max(r.rps for r in runs),
        "p50_ms": median([r.latency_ms["p50"] for r in runs]),
        "p99_ms": median([r.latency_ms["p99"] for r in runs]),
        "api_cpu_ms": median([r.cpu_ms["api"] for r in runs]),
        "postgres_cpu_ms": median([r.cpu_ms["postgres"] for r in runs]),
        "redis_cpu_ms": median([r.cpu_ms["redis"] for r in runs]),
        "busy": median([r.cpu_ms["machine_busy_share"] for r in runs]),
        "errors": sum(r.errors({ok}) for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="a seeded bench database of your own")
    parser.add_argument("--a", type=Path, required=True, help="the baseline tree")
    parser.add_argument("--b", type=Path, default=ROOT, help="the changed tree (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of the warm-up run of each side")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--redis-db", type=int, default=13, help="emptied first")
    parser.add_argument("--endpoints", default="redeem,nearby")
    parser.add_argument("--codes", type=int, default=0, help="codes to unlock (default: enough for every run)")
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    endpoints = args.endpoints.split(",")
    wrk = ensure_wrk()
    DATA_DIR.mkdir(exist_ok=True)
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()

    signer = Signer.new()
    data: dict[str, Path] = {}
    with psycopg.connect(libpq_url(database_url(args.database)), autocommit=True) as conn:
        if "nearby" in endpoints:
            data["nearby"] = nearby_rows(conn, signer, 5_000)
        if "redeem" in endpoints:
            runs_total = 2 * (args.rounds * args.duration + args.warmup)
            data["redeem"] = redeem_rows(conn, signer, args.codes or runs_total * 2_000)
        conn.execute("CHECKPOINT")

    env = service_env(args.database, redis_url, signer.public_pem, args.pool_size)
    sides = {"A": args.a.resolve(), "B": args.b.resolve()}
    results: dict[str, dict[str, list[LoadResult]]] = {e: {"A": [], "B": []} for e in endpoints}
    offsets = {e: 0 for e in endpoints}
    with (
        Progress(transient=True) as progress,
        tree_service(sides["A"], env, args.workers, DATA_DIR / "ab-service-A.log") as service_a,
        tree_service(sides["B"], env, args.workers, DATA_DIR / "ab-service-B.log") as service_b,
    ):
        services = {"A": service_a, "B": service_b}

        def load(endpoint: str, side: str, name: str, duration_s: int) -> LoadResult:
            script, _ = ENDPOINTS[endpoint]
            result = run_wrk(
                wrk,
                script,
                services[side],
                name=f"{endpoint} {side} {name}",
                connections=args.connections,
                duration_s=duration_s,
                progress=progress,
                data=data[endpoint],
                offset=offsets[endpoint],
            )
            if endpoint == "redeem":  # codes are redeemed once: the next run takes the next rows
                offsets[endpoint] += result.sent
            return result

        for endpoint in endpoints:
            for side in ("A", "B"):
                load(endpoint, side, "warm-up", args.warmup)
        for round_ in range(args.rounds):
            order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
            for endpoint in endpoints:
                for side in order:
                    result = load(endpoint, side, f"round {round_ + 1}", args.duration)
                    results[endpoint][side].append(result)
                    print(
                        f"{endpoint:7} {side} round {round_ + 1}: {result.rps:8.1f}/s"
                        f"  p99 {result.latency_ms['p99']:6.1f} ms  api {result.cpu_ms['api']:.3f} ms/req"
                        f"  statuses {result.statuses}",
                        flush=True,
                    )

    print(
        f"\nA = {sides['A']}\nB = {sides['B']}\n{args.rounds} rounds of {args.duration} s, alternating, "
        f"{args.connections} connections, {args.workers} workers, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print(
        "| endpoint | side | req/s median | req/s range | p50 ms | p99 ms | api CPU ms/req | postgres CPU ms/req "
        "| redis CPU ms/req | machine busy | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summaries = {}
    for endpoint in endpoints:
        _, ok = ENDPOINTS[endpoint]
        s = {side: summary(results[endpoint][side], ok) for side in ("A", "B")}
        summaries[endpoint] = s
        for side in ("A", "B"):
            v = s[side]
            print(
                f"| {endpoint} | {side} | {v['rps']:.0f} | {v['rps_min']:.0f}–{v['rps_max']:.0f} | {v['p50_ms']:.1f} "
                f"| {v['p99_ms']:.1f} | {v['api_cpu_ms']:.3f} | {v['postgres_cpu_ms']:.3f} | {v['redis_cpu_ms']:.3f} "
                f"| {v['busy']:.0%} | {v['errors']} |"
            )
        ratios = [b.rps / a.rps for a, b in zip(results[endpoint]["A"], results[endpoint]["B"], strict=True)]
        print(
            f"| {endpoint} | B / A | {s['B']['rps'] / s['A']['rps']:.3f} "
            f"| per round {min(ratios):.3f}–{max(ratios):.3f} "
            f"| {s['B']['p50_ms'] / s['A']['p50_ms']:.3f} | {s['B']['p99_ms'] / s['A']['p99_ms']:.3f} "
            f"| {s['B']['api_cpu_ms'] / s['A']['api_cpu_ms']:.3f} "
            f"| {s['B']['postgres_cpu_ms'] / max(s['A']['postgres_cpu_ms'], 1e-9):.3f} | | | |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sides": {k: str(v) for k, v in sides.items()},
                    "summaries": summaries,
                    "runs": {
                        e: {side: [asdict(r) for r in rs] for side, rs in by.items()} for e, by in results.items()
                    },
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
