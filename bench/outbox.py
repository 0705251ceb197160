"""What the webhooks' outbox costs checkin(): `python -m bench.outbox`.

Revision 0006 changes no function, only the events table that checkin() writes: a column
`tx xid8 DEFAULT pg_current_xact_id()` and a partial index `events_outbox` on (tx, id) for the
kinds a webhook reports. bench/baseline.py compares function versions on shared tables, so it cannot
see a table change. Here the same checkin() (the API's own call) runs under pgbench on the
--only checkin-db data set, in alternating rounds with the change off ("before": no default, so
tx stays NULL, and no index) and on ("after": as migrated), toggled between rounds; the database is
left as migrated. Results go to bench/data/outbox/.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import psycopg
from rich.console import Console

from bench import report
from bench.__main__ import QUICK_RUNS, Runs, ensure_pgbench, progress_bars, settle
from bench.runners import DATA_DIR, LoadResult, run_pgbench
from bench.seed import QUICK_PLAN, database_url, libpq_url, seed_main_database
from bench.workload import pgbench_script, pgbench_variables

INDEX_SQL = """
    CREATE INDEX events_outbox ON events (tx, id)
        WHERE tx IS NOT NULL
          AND type IN ('offer_unlocked', 'offer_redeemed', 'redemption_voided', 'feedback_received', 'message_received')
"""
SIDES = {
    "before": ("ALTER TABLE events ALTER COLUMN tx DROP DEFAULT", "DROP INDEX IF EXISTS events_outbox"),
    "after": ("ALTER TABLE events ALTER COLUMN tx SET DEFAULT pg_current_xact_id()", INDEX_SQL),
}


def switch(url: str, side: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        if side == "before" or conn.execute("SELECT to_regclass('events_outbox')").fetchone()[0] is None:
            for statement in SIDES[side]:
                conn.execute(statement)
        else:
            conn.execute(SIDES[side][0])
        conn.execute("CHECKPOINT")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, help="rounds of each side (default 5; 3 with --quick)")
    args = parser.parse_args()
    console = Console()
    runs = QUICK_RUNS if args.quick else Runs()
    if args.rounds:
        runs = replace(runs, compare_rounds=args.rounds)
    plan = QUICK_PLAN
    url = database_url(plan.database)
    pgbench = ensure_pgbench()
    started = time.monotonic()
    with progress_bars(console) as progress:
        seed_main_database(plan, progress)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('webhook_outbox_cursor')").fetchone()[0] is None:
                raise SystemExit("the bench database is not at revision 0006 or later")
            settle(conn)
        clients = runs.workers * runs.pool_size
        script, variables = pgbench_script(), pgbench_variables(plan)

        def run(side: str, name: str, seconds: int) -> LoadResult:
            switch(url, side)
            return run_pgbench(
                pgbench,
                url,
                script,
                name=name,
                clients=clients,
                duration_s=seconds,
                variables=variables,
                progress=progress,
            )

        for side in SIDES:
            run(side, f"checkin() outbox {side}: warm-up", max(2, runs.compare_s // 2))
        results: dict[str, list[LoadResult]] = {side: [] for side in SIDES}
        for i in range(runs.compare_rounds):  # B A, A B, ...: neither side always the later
            for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
                results[side].append(run(side, f"checkin() outbox {side}, round {i + 1}", runs.compare_s))
        switch(url, "after")
    summary = report.before_after(results["before"], results["after"])
    summary |= {"rounds": runs.compare_rounds, "duration_s": runs.compare_s, "clients": clients}
    summary["wall_s"] = round(time.monotonic() - started, 1)
    out = DATA_DIR / "outbox"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"summary": summary, "raw": {s: [asdict(r) for r in rs] for s, rs in results.items()}}, indent=2)
    )
    before, after = summary["baseline"], summary["head"]
    console.print(
        f"checkin() calls/s, outbox off → on: {before['rps']:.0f} → {after['rps']:.0f} "
        f"(ratio {summary['ratio']:.3f}, rounds {summary['round_ratios']}); PostgreSQL CPU per call "
        f"{before['cpu_ms']['postgres']:.2f} → {after['cpu_ms']['postgres']:.2f} ms "
        f"(ratio {summary['postgres_cpu_ratio']:.3f}); {clients} clients, "
        f"{runs.compare_rounds} × {runs.compare_s} s each side"
    )


if __name__ == "__main__":
    main()
