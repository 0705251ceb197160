"""Where checkin()'s time goes, statement by statement, baseline and head: `python -m bench.statement_costs`.

pgbench (bench/baseline.py) says how many calls a second each version manages; this says why. A private
PostgreSQL cluster (tests/servers.py), with pg_stat_statements timing the statements inside the
functions too (track = all), gets a copy of the --only checkin-db data set and the baseline's functions.
One session per side then makes checkin() calls exactly as pgbench does, each its own transaction, in
alternating rounds; commits do not wait for the disk, so what is measured is CPU. Per side and mix:

- the backend's CPU per call (/proc), the transaction around the call included;
- the time inside the call (the top-level statement, wall clock) and each statement's time per check-in,
  the functions' own statements included (a function's call holds the statements it runs).

Two mixes: new users, as `--only checkin-db` runs them, and the small set's seeded users, each with one
accepted check-in 5-60 days old (their history is read, and earlier exposures count return visits).
Both are mostly accepted check-ins (exposures, rules, unlocks). Results go to bench/data/statements/.
A few minutes; CPU per call holds up on a busy machine better than calls/s, the wall-clock times less.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import psycopg
from rich.console import Console

from bench import baseline
from bench.__main__ import progress_bars
from bench.runners import DATA_DIR
from bench.seed import QUICK_PLAN, database_url, libpq_url, seed_main_database
from bench.workload import pgbench_script, pgbench_variables
from tests.servers import postgres_server

STATEMENTS_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "5000",
    "shared_buffers": "256MB",
}
MIXES = {"new users": True, "seeded users": False}
TOP = 25

STATEMENTS_SQL = """
    SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def copy_database(source_url: str, target_url: str) -> None:
    """The seeded data set into the private cluster, with fresh statistics (a restore has none)."""
    dump = subprocess.run(["pg_dump", "-Fc", libpq_url(source_url)], check=True, capture_output=True).stdout
    subprocess.run(["pg_restore", "--no-owner", "-d", libpq_url(target_url)], input=dump, check=True)
    with psycopg.connect(libpq_url(target_url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("VACUUM ANALYZE")


def call_statement(new_users: bool, side: str) -> str:
    """The statement pgbench runs for a side, with pgbench's variables left as :p and :u."""
    script = (
        pgbench_script(baseline.CALL, origin="bench/baseline.py: CALL", schema=baseline.SCHEMA, new_users=new_users)
        if side == "baseline"
        else pgbench_script(new_users=new_users)
    )
    lines = [line for line in script.read_text().splitlines() if line and not line.startswith(("--", "\\"))]
    return "\n".join(lines)


def bind(statement: str, variables: dict[str, object]) -> str:
    return re.sub(r"(?<![:\w]):(\w+)", lambda m: str(variables[m.group(1)]), statement)


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, calls: int, rounds: int, console: Console) -> dict:
    plan = QUICK_PLAN
    variables = pgbench_variables(plan)
    rng = random.Random(15)
    results: dict = {}
    for mix, new_users in MIXES.items():
        statements = {side: call_statement(new_users, side) for side in ("baseline", "head")}
        cpu: dict[str, list[float]] = {"baseline": [], "head": []}
        per_statement: dict[str, dict[str, list[float]]] = {"baseline": defaultdict(list), "head": defaultdict(list)}
        sessions = {}
        for side in statements:
            conn = psycopg.connect(libpq_url(url), autocommit=True)
            conn.execute("SET synchronous_commit = off")  # CPU, not the disk's flush
            if side == "baseline":
                conn.execute(f"SET search_path = {baseline.SEARCH_PATH}")
            sessions[side] = (conn, conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        try:
            for i in range(rounds + 1):  # the first round warms caches and plans, and is not counted
                for side in ("baseline", "head") if i % 2 else ("head", "baseline"):
                    conn, pid = sessions[side]
                    conn.execute("SELECT pg_stat_statements_reset()")
                    started = backend_cpu_s(pid)
                    for _ in range(calls):
                        point, user = rng.randrange(1, plan.points + 1), 2 * rng.randrange(plan.users // 2) + 1
                        conn.execute(bind(statements[side], variables | {"p": point, "u": user}))
                    used = backend_cpu_s(pid) - started
                    if i == 0:
                        continue
                    cpu[side].append(used * 1e6 / calls)
                    for query, _calls, total_ms in conn.execute(STATEMENTS_SQL):
                        per_statement[side][query].append(total_ms * 1e3 / calls)
                    console.print(f"{mix}, {side}, round {i} of {rounds}: {used * 1e6 / calls:.0f} µs of CPU per call")
        finally:
            for conn, _ in sessions.values():
                conn.close()
        results[mix] = {side: summarize(cpu[side], per_statement[side], rounds) for side in statements}
    return results


def summarize(cpu: list[float], per_statement: dict[str, list[float]], rounds: int) -> dict:
    # A statement missing from a round ran 0 times there.
    times = {q: statistics.median(v + [0.0] * (rounds - len(v))) for q, v in per_statement.items()}
    call = max(times.items(), key=lambda item: item[1])  # the top-level statement: it holds all the others
    inner = sorted(
        ((q, t) for q, t in times.items() if q != call[0] and "pg_stat_statements" not in q), key=lambda item: -item[1]
    )
    return {
        "cpu_us": round(statistics.median(cpu), 1),
        "cpu_us_rounds": [round(c, 1) for c in cpu],
        "in_call_us": round(call[1], 1),
        "statements": [{"query": q[:160], "us_per_checkin": round(t, 1)} for q, t in inner[:TOP]],
    }


def markdown(results: dict, facts: dict) -> str:
    out = [
        "# checkin(): where the time goes",
        "",
        f"`python -m bench.statement_costs` on {facts['date']} at commit `{facts['commit']}`: {facts['calls']} calls "
        f"per round and side, {facts['rounds']} alternating rounds after a warm-up, each call its own transaction "
        "(commits not waiting for the disk), pg_stat_statements with track = all. Medians of the rounds, µs.",
        "",
        "| mix | side | CPU per call | CPU by round | inside the call (wall clock) |",
        "|---|---|---|---|---|",
    ]
    for mix, sides in results.items():
        for side, r in sides.items():
            rounds = ", ".join(f"{c:.0f}" for c in r["cpu_us_rounds"])
            out.append(f"| {mix} | {side} | {r['cpu_us']:.0f} | {rounds} | {r['in_call_us']:.0f} |")
        base, head = sides["baseline"]["cpu_us"], sides["head"]["cpu_us"]
        out.append(f"| {mix} | baseline / head | {base / head:.3f} |  |  |")
    for mix, sides in results.items():
        for side, r in sides.items():
            out += ["", f"## {mix}, {side}: the {TOP} statements with the most time per check-in", ""]
            out += ["| µs per check-in | statement |", "|---|---|"]
            out += [f"| {s['us_per_checkin']:.1f} | `{s['query'].replace('|', '/')}` |" for s in r["statements"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.statement_costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=800, help="calls per round and side")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    with progress_bars(console) as progress:
        seed_main_database(QUICK_PLAN, progress)
    with postgres_server(STATEMENTS_SETTINGS) as server:
        url = server.database_url("bench")
        with psycopg.connect(libpq_url(server.url), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        console.print("copying the data set into a private cluster")
        copy_database(database_url(QUICK_PLAN.database), url)
        installed = baseline.install(url)
        results = measure(url, args.calls, args.rounds, console)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "calls": args.calls,
        "rounds": args.rounds,
        "baseline": installed["baseline_sources"],
        "head_revision": installed["head_revision"],
        "wall_s": round(time.monotonic() - started, 1),
    }
    folder = DATA_DIR / "statements"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps({"facts": facts, "results": results}, indent=1) + "\n")
    (folder / "latest.md").write_text(markdown(results, facts))
    for mix, sides in results.items():
        base, head = sides["baseline"], sides["head"]
        console.print(
            f"{mix}: CPU per call {base['cpu_us']:.0f} → {head['cpu_us']:.0f} µs "
            f"(baseline / head {base['cpu_us'] / head['cpu_us']:.3f}); inside the call "
            f"{base['in_call_us']:.0f} → {head['in_call_us']:.0f} µs"
        )
    console.print(f"wrote {folder / 'latest.md'}")


if __name__ == "__main__":
    main()
