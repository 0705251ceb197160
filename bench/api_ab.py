"""The check-in over HTTP, before and after, in one run: `python -m bench.api_ab`.

A is a commit (--base, HEAD by default) extracted with git archive; B is the working tree as it is;
with --granian, C is B served by granian instead of uvicorn. Each side is its own service (2 workers,
production settings, RS256 tokens, pool size 4, as bench/runners.py starts it) on its own port,
against one database (a copy of the quick bench database, migrated to the trees' head) and one
Redis database. wrk rounds alternate A B, B A, ...; the medians of requests/s, p99 and the API's CPU
per request are reported with ratios to A (to the first side of --sides). --fixed-share adds rounds
at one offered rate for every side, that share of the first side's saturation (the p99 target's
point). --profile samples one worker of each side at saturation with py-spy. Everything lands in
bench/data/api_ab/ab-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import redis
from rich.console import Console
from rich.progress import Progress, track

from bench.runners import (
    DATA_DIR,
    ROOT,
    VENV_BIN,
    Service,
    _stat,
    ensure_py_spy,
    ensure_wrk,
    run_wrk,
    start_profile,
    summarize_profile,
)
from bench.seed import QUICK_PLAN, database_url, libpq_url
from bench.workload import Signer, write_tsv

WORK_DIR = DATA_DIR / "api_ab"
DATABASE = "checkin_offers_bench_api_ab"
TEMPLATE = QUICK_PLAN.database
REDIS_DB = 13
SERVE = "from checkin_offers.cli import main; main()"


def tree(ref: str) -> Path:
    """The commit `ref` extracted to WORK_DIR/base."""
    path = WORK_DIR / "base"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return path


def prepare_database(base: Path) -> str:
    """A copy of the quick bench database (made once), migrated to the head of the trees, with the
    positions past their retention purged (bench/seed.py: purge_due_positions says why)."""
    url = database_url(DATABASE)
    with psycopg.connect(libpq_url(database_url("postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE}"')
    env = {**os.environ, "PYTHONPATH": str(base), "CHECKIN_DATABASE_URL": url}
    for command in ("migrate", "purge"):
        out = subprocess.run(
            [str(VENV_BIN / "python"), "-c", SERVE, command],
            cwd=base,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        print(out.stdout.strip())
    return url


def checkin_rows(url: str, signer: Signer, rows: int) -> Path:
    """`rows` check-ins at the bench points in turn, each by a user of its own who has never checked in
    (as `--only checkin-db` runs pgbench: bench/workload.py NEW_USER), written to WORK_DIR: enough rows
    that no round runs out and starts over with users who just checked in (a mix of refusals)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        points = conn.execute("SELECT lat, lon, accuracy_m FROM bench_points ORDER BY id").fetchall()
        conn.execute("ANALYZE")
    run = secrets.token_hex(4)
    data = [
        (signer.token(f"bench-ab-{run}-{i}", "app_user"), *points[i % len(points)])
        for i in track(range(rows), description=f"RS256 tokens for {rows:,} new users", transient=True)
    ]
    return write_tsv(WORK_DIR / "checkins.tsv", data)


class TreeService(Service):
    """The service of one tree: `checkin-offers serve` (uvicorn) or granian, its code from that tree."""

    def __init__(self, name: str, code: Path, env: dict[str, str], *, granian: bool = False) -> None:
        super().__init__(env | {"PYTHONPATH": str(code)}, 2, WORK_DIR / f"service-{name}.log")
        self.name = name
        self.cwd = code
        self.granian = granian
        self.metrics_dir: str | None = None
        if granian:
            self.metrics_dir = tempfile.mkdtemp(prefix="bench-api-ab-metrics-")
            self.env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
            self.argv = [
                str(VENV_BIN / "granian"),
                "--interface",
                "asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "2",
                "--loop",
                "uvloop",
                "--no-ws",
                "--log-level",
                "warning",
                "api.main:app",
            ]
        else:
            self.argv = [str(VENV_BIN / "python"), "-c", SERVE, "serve", "--port", str(self.port), "--workers", "2"]

    def __exit__(self, *_: object) -> None:
        super().__exit__()
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def worker_pids(self) -> list[int]:
        """The serving processes: the children of the server that are not multiprocessing's helpers."""
        pids = []
        for pid in os.listdir("/proc"):
            if pid.isdigit() and (stat := _stat(pid)) and stat[1] == self.pid:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"resource_tracker" not in cmdline:
                    pids.append(int(pid))
        return sorted(pids)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="the commit side A runs (B is the working tree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rows", type=int, default=60_000, help="check-in rows, each a new user")
    parser.add_argument("--granian", action="store_true", help="also C: tree B served by granian")
    parser.add_argument(
        "--fixed-share", type=float, default=0, help="then rounds at this share of the first side's saturation"
    )
    parser.add_argument("--fixed-rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="seconds of py-spy on one worker of each side")
    parser.add_argument("--sides", default="", help="e.g. 'B' or 'BC': only these sides (a profile, a smoke run)")
    args = parser.parse_args(argv)
    console = Console()
    if args.granian and not (VENV_BIN / "granian").exists():
        raise SystemExit("--granian: install it into the venv for the measurement (.venv/bin/pip install granian)")
    wrk = ensure_wrk()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    base, work = tree(args.base), ROOT
    url = prepare_database(base)
    signer = Signer.new()
    data = checkin_rows(url, signer, args.rows)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")} | {
        "CHECKIN_ENV": "production",
        "CHECKIN_DATABASE_URL": url,
        "CHECKIN_REDIS_URL": redis_url,
        "CHECKIN_JWT_PUBLIC_KEY": signer.public_pem,
        "CHECKIN_JWT_ALGORITHM": "RS256",
        "CHECKIN_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "CHECKIN_DB_POOL_SIZE": "4",
        "CHECKIN_CHECKIN_RATE_PER_MINUTE": "1000000",
    }
    sides = {"A": (base, False), "B": (work, False)} | ({"C": (work, True)} if args.granian else {})
    if args.sides:
        sides = {k: v for k, v in sides.items() if k in args.sides}
    services = {name: TreeService(name, code, env, granian=g) for name, (code, g) in sides.items()}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in services}
    profiles: dict[str, dict[str, Any]] = {}
    fixed: dict[str, list[dict[str, Any]]] = {name: [] for name in services}
    offset = 0
    started = []
    try:
        for service in services.values():
            started.append(service.__enter__())
        with Progress(console=console, transient=True) as progress:

            def load(service: TreeService, label: str, seconds: int, rate: float = 0) -> dict[str, Any]:
                nonlocal offset
                result = run_wrk(
                    wrk,
                    str(ROOT / "bench" / "checkin.lua"),
                    service,
                    name=label,
                    connections=args.connections,
                    duration_s=seconds,
                    progress=progress,
                    data=data,
                    offset=offset,
                    rate=rate,
                )
                offset += result.sent
                return {
                    "rps": result.rps,
                    "p50": result.latency_ms["p50"],
                    "p99": result.latency_ms["p99"],
                    "api_cpu_ms": result.cpu_ms["api"],
                    "busy": result.cpu_ms["machine_busy_share"],
                    "statuses": result.statuses,
                    "errors": result.errors({201}),
                }

            for name, service in services.items():
                load(service, f"{name} warm-up", 3)
            names = list(services)
            for i in range(args.rounds):
                for name in names if i % 2 == 0 else reversed(names):
                    outcome = load(services[name], f"{name} round {i + 1}", args.seconds)
                    results[name].append(outcome)
                    console.print(f"round {i + 1} {name}: {json.dumps(outcome)}")
            if args.fixed_share:
                # The latency target's point: every side at one offered rate, a share of the first side's saturation.
                rate = round(args.fixed_share * statistics.median(r["rps"] for r in results[names[0]]), 1)
                for i in range(args.fixed_rounds):
                    for name in names if i % 2 == 0 else reversed(names):
                        outcome = load(services[name], f"{name} at {rate}/s ({i + 1})", args.seconds, rate) | {
                            "offered_rps": rate
                        }
                        fixed[name].append(outcome)
                        console.print(f"fixed {i + 1} {name}: {json.dumps(outcome)}")
            if args.profile:
                py_spy = ensure_py_spy()
                for name, service in services.items():
                    output = WORK_DIR / f"profile-{name}.txt"
                    spy = start_profile(py_spy, service.worker_pids()[0], args.profile, output)
                    load(service, f"{name} profile", args.profile + 2)
                    spy.wait(timeout=args.profile + 30)
                    profiles[name] = summarize_profile(output, args.profile)
    finally:
        for service in started:
            service.__exit__()

    def medians(rounds: list[dict[str, Any]]) -> dict[str, float]:
        return {
            "rps": median([r["rps"] for r in rounds]),
            "p99_ms": median([r["p99"] for r in rounds]),
            "p50_ms": median([r["p50"] for r in rounds]),
            "api_cpu_ms_per_request": median([r["api_cpu_ms"] for r in rounds]),
        }

    summary = {name: medians(rounds) for name, rounds in results.items() if rounds}
    at_fixed_rate = {
        name: {"offered_rps": rounds[0]["offered_rps"]} | medians(rounds) for name, rounds in fixed.items() if rounds
    }
    first = next(iter(summary), "")  # the ratios' reference: A, or the first side of --sides
    ratios = {
        name: {key: round(value / summary[first][key], 3) for key, value in figures.items() if summary[first][key]}
        for name, figures in summary.items()
        if name != first
    }
    out = WORK_DIR / f"ab-{time.strftime('%H%M%S')}.json"
    everything = {
        "summary": summary,
        "ratios_to_first": ratios,
        "at_fixed_rate": at_fixed_rate,
        "rounds": results,
        "fixed_rounds": fixed,
        "profiles": profiles,
    }
    out.write_text(json.dumps(everything, indent=1))
    console.print_json(json.dumps({"medians": summary, "ratios_to_first": ratios, "at_fixed_rate": at_fixed_rate}))
    for name, profile in profiles.items():
        console.print(f"[bold]{name}[/] profile: busy {profile['busy_share']}, focus {json.dumps(profile['focus'])}")
        for entry in profile["self"]:
            console.print(f"  {entry['share']:.3f} {entry['frame']}")
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
