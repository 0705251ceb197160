"""What a change to the tables checkin() writes costs it: `python -m bench.table_change <change>`.

bench/baseline.py compares function versions on shared tables, so it cannot see a table change. Here
the same checkin() (the API's own call) runs under pgbench on the --only checkin-db data set, in
alternating rounds with the change off ("before") and on ("after", as migrated), toggled between
rounds; the database is left as migrated. Results go to bench/data/<change>/. The changes:

- outbox (revision 0006): events gain `tx xid8 DEFAULT pg_current_xact_id()` and a partial index
  `events_outbox` on (tx, id) for the kinds a webhook reports ("before": no default, so tx stays
  NULL, and no index).
- position-index (revision 0008): the partial index `checkins_position_held` of the check-ins that
  still hold a position, which the retention purge reads and every new check-in enters.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace

import psycopg
from rich.console import Console

from bench import report
from bench.__main__ import QUICK_RUNS, Runs, ensure_pgbench, progress_bars, settle
from bench.runners import DATA_DIR, LoadResult, run_pgbench
from bench.seed import QUICK_PLAN, database_url, libpq_url, seed_main_database
from bench.workload import pgbench_script, pgbench_variables


@dataclass(frozen=True)
class TableChange:
    index: str  # the index the change adds (dropped for "before", made again for "after")
    index_sql: str
    before: tuple[str, ...] = ()  # statements that turn the rest of the change off
    after: tuple[str, ...] = ()  # and on again


SIDES = ("before", "after")
CHANGES = {
    "outbox": TableChange(
        "events_outbox",
        """CREATE INDEX events_outbox ON events (tx, id)
            WHERE tx IS NOT NULL AND type IN ('offer_unlocked', 'offer_redeemed', 'redemption_voided',
                                              'feedback_received', 'message_received')""",
        before=("ALTER TABLE events ALTER COLUMN tx DROP DEFAULT",),
        after=("ALTER TABLE events ALTER COLUMN tx SET DEFAULT pg_current_xact_id()",),
    ),
    "position-index": TableChange(
        "checkins_position_held",
        "CREATE INDEX checkins_position_held ON checkins (observed_at) WHERE lon IS NOT NULL",
    ),
}


def switch(url: str, change: TableChange, side: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for statement in change.before if side == "before" else change.after:
            conn.execute(statement)
        present = conn.execute("SELECT to_regclass(%s)", (change.index,)).fetchone()[0] is not None
        if side == "before" and present:
            conn.execute(f"DROP INDEX {change.index}")
        elif side == "after" and not present:
            conn.execute(change.index_sql)
        conn.execute("CHECKPOINT")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.table_change", description=__doc__)
    parser.add_argument("change", choices=sorted(CHANGES))
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, help="rounds of each side (default 5; 3 with --quick)")
    args = parser.parse_args()
    change = CHANGES[args.change]
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
            if conn.execute("SELECT to_regclass(%s)", (change.index,)).fetchone()[0] is None:
                raise SystemExit(f"the bench database has no {change.index}: not migrated to the change")
            settle(conn)
        clients = runs.workers * runs.pool_size
        script, variables = pgbench_script(), pgbench_variables(plan)

        def run(side: str, name: str, seconds: int) -> LoadResult:
            switch(url, change, side)
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
            run(side, f"checkin() {args.change} {side}: warm-up", max(2, runs.compare_s // 2))
        results: dict[str, list[LoadResult]] = {side: [] for side in SIDES}
        for i in range(runs.compare_rounds):  # B A, A B, ...: neither side always the later
            for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
                results[side].append(run(side, f"checkin() {args.change} {side}, round {i + 1}", runs.compare_s))
        switch(url, change, "after")
    summary = report.before_after(results["before"], results["after"])
    summary |= {"rounds": runs.compare_rounds, "duration_s": runs.compare_s, "clients": clients}
    summary["wall_s"] = round(time.monotonic() - started, 1)
    out = DATA_DIR / args.change
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"summary": summary, "raw": {s: [asdict(r) for r in rs] for s, rs in results.items()}}, indent=2)
    )
    before, after = summary["baseline"], summary["head"]
    console.print(
        f"checkin() calls/s, {args.change} off → on: {before['rps']:.0f} → {after['rps']:.0f} "
        f"(ratio {summary['ratio']:.3f}, rounds {summary['round_ratios']}); PostgreSQL CPU per call "
        f"{before['cpu_ms']['postgres']:.2f} → {after['cpu_ms']['postgres']:.2f} ms "
        f"(ratio {summary['postgres_cpu_ratio']:.3f}); {clients} clients, "
        f"{runs.compare_rounds} × {runs.compare_s} s each side"
    )


if __name__ == "__main__":
    main()
