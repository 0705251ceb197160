"""How far checkin() can go on this machine: `python -m bench.checkin_bounds`.

Issue 15's first goal asks for twice the calls a second of revision 0007's checkin(). This measures the
ceilings that goal runs into, with pgbench as `--only checkin-db` runs it (the small data set, 8 clients,
a new user at every call), alternating rounds of:

- head: checkin() as the API calls it;
- 0007: the baseline of bench/baseline.py, which the goal is stated against;
- head without counters: head's functions with every counter and effect-sum write taken out
  (NO_COUNTERS), installed in a schema of their own: the most that rolling those figures up from the
  events later could save (the stats would be wrong, so this is a ceiling, not a candidate);
- head with generic plans: plan_cache_mode = force_generic_plan for the sessions, so that no
  statement inside the functions is planned again for its parameters;
- one statement: bench/one_statement.sql, the "one-statement transaction of the same shape" the issue
  compares with, which does a fraction of a check-in's work (its header says what it leaves out).

Per variant: calls a second (median of the rounds, and its ratio to head's in each round), PostgreSQL's
CPU per call (/proc) and the WAL written per call. Results go to bench/data/bounds/.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.console import Console

from bench import baseline, report
from bench.__main__ import progress_bars, settle
from bench.runners import DATA_DIR, LoadResult, ensure_pgbench, run_pgbench
from bench.seed import QUICK_PLAN, ROOT, database_url, libpq_url, seed_main_database
from bench.workload import pgbench_script, pgbench_variables
from offers.checkin import CHECKIN_SQL

FUNCTIONS = ROOT / "migrations" / "sql" / "functions"
NO_COUNTERS_SCHEMA = "bench_no_counters"

# Head's functions without the writes to campaign_counters, campaign_effect, campaign_triggered and
# campaign_unredeemed: for each file, (pattern, replacement) pairs, each pattern (re.DOTALL) matching
# exactly once, so a change to these functions stops the bench here instead of measuring something else.
NO_COUNTERS: dict[str, list[tuple[str, str]]] = {
    "checkin.sql": [(r"\n        \), counted AS \(.*?DO UPDATE SET n = c\.n \+ 1", "")],
    "accept_in_campaign.sql": [
        (r"    WITH logged AS \(\n", ""),
        (r"\n    \)\n    INSERT INTO campaign_counters .*?n = c\.n \+ 1;", ";"),
    ],
    "exposure_arm.sql": [
        (r"\), logged AS \(\n", ")\n"),
        (r"\n    \), counted AS \(.*?pre_sq = e\.pre_sq \+ excluded\.pre_sq;", ";"),
    ],
    "unlock_offer.sql": [(r"    \), counted AS \(.*?\n    \), unredeemed AS \(.*?\n    \)\n", "    )\n")],
    "mark_triggered.sql": [(r"    WITH triggered AS \(\n(.*?)\n        RETURNING .*?excluded\.pre_sq;", r"\1;")],
    # the exposures' own counts stay; the loop over them adds to the sums
    "count_return_visits.sql": [
        (r"        IF r\.itt THEN.*?END IF;\n        IF r\.triggered THEN.*?END IF;\n", "        NULL;\n")
    ],
}


def without_counters(name: str, text: str) -> str:
    for pattern, replacement in NO_COUNTERS.get(name, []):
        text, found = re.subn(pattern, replacement, text, flags=re.DOTALL)
        if found != 1:
            raise RuntimeError(
                f"migrations/sql/functions/{name} changed: bench/checkin_bounds.py: NO_COUNTERS no longer "
                "finds the text it takes out; update it"
            )
    return text


def install_without_counters(url: str) -> None:
    """Head's functions, those of the check-in path without their counter writes, in their own schema."""
    texts = {
        path.name: without_counters(path.name, path.read_text())
        for path in sorted(FUNCTIONS.glob("*.sql"))
        if not baseline.DEFINES_TRIGGER.search(path.read_text())
    }
    left = [name for name in NO_COUNTERS if re.search(r"(INSERT INTO|UPDATE) campaign_", texts[name])]
    if left:
        raise RuntimeError(f"bench/checkin_bounds.py: NO_COUNTERS leaves counter writes in {', '.join(left)}")
    baseline.install_functions(url, NO_COUNTERS_SCHEMA, list(texts.values()), "head without counters")


@dataclass
class Variant:
    script: Path
    settings: dict[str, str] | None = None


def variants() -> dict[str, Variant]:
    return {
        "head": Variant(pgbench_script(new_users=True)),
        "0007": Variant(
            pgbench_script(baseline.CALL, origin="bench/baseline.py: CALL", schema=baseline.SCHEMA, new_users=True),
            {"search_path": baseline.SEARCH_PATH},
        ),
        "head without counters": Variant(
            pgbench_script(CHECKIN_SQL.text, schema=NO_COUNTERS_SCHEMA, new_users=True),
            {"search_path": f"{NO_COUNTERS_SCHEMA},public"},
        ),
        "head with generic plans": Variant(pgbench_script(new_users=True), {"plan_cache_mode": "force_generic_plan"}),
        "one statement": Variant(ROOT / "bench" / "one_statement.sql"),
    }


def measure(url: str, rounds: int, seconds: int, console: Console) -> dict[str, list[dict]]:
    pgbench = ensure_pgbench()
    plan = variants()
    runs: dict[str, list[dict]] = {name: [] for name in plan}
    names = list(plan)
    with (
        progress_bars(console) as progress,
        psycopg.connect(libpq_url(url), autocommit=True) as probe,
    ):

        def run(name: str, label: str, duration_s: int) -> dict:
            since, wal_before = probe.execute("SELECT clock_timestamp(), pg_current_wal_lsn()").fetchone()
            result: LoadResult = run_pgbench(
                pgbench,
                url,
                plan[name].script,
                name=label,
                clients=8,
                duration_s=duration_s,
                variables=pgbench_variables(QUICK_PLAN),
                progress=progress,
                settings=plan[name].settings,
            )
            wal = probe.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (wal_before,)).fetchone()[0]
            result.labels = {label: n for label, n in probe.execute(baseline.OUTCOMES_SQL, {"since": since}) if n}
            mix = report.outcome_mix([result])
            return {
                "calls_per_s": result.rps,
                "calls": result.requests,
                "p99_ms": result.latency_ms["p99"],
                "postgres_cpu_ms_per_call": result.cpu_ms.get("postgres", 0.0),
                "wal_kb_per_call": round(float(wal) / max(result.requests, 1) / 1024, 2),
                "accepted_share": mix.get("accepted", 0.0),
                "unlocks_per_checkin": mix["unlocked_per_checkin"],
            }

        for name in names:  # not counted: failures show here, and caches warm
            run(name, f"{name}: warm-up", max(2, seconds // 2))
        for i in range(rounds):
            # Each round starts one variant further on, so none is always first or always after another.
            for name in names[i % len(names) :] + names[: i % len(names)]:
                runs[name].append(run(name, f"{name}, round {i + 1} of {rounds}", seconds))
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    head = runs["head"]
    summary = {}
    for name, rs in runs.items():
        ratios = [r["calls_per_s"] / h["calls_per_s"] for r, h in zip(rs, head, strict=True)]

        def median(key: str, rs: list[dict] = rs) -> float:
            return round(statistics.median(r[key] for r in rs), 3)

        summary[name] = {
            "calls_per_s": median("calls_per_s"),
            "by_round": [r["calls_per_s"] for r in rs],
            "ratio_to_head": round(statistics.median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "postgres_cpu_ms_per_call": median("postgres_cpu_ms_per_call"),
            "wal_kb_per_call": median("wal_kb_per_call"),
            "accepted_share": median("accepted_share"),
            "unlocks_per_checkin": median("unlocks_per_checkin"),
        }
    return summary


def markdown(summary: dict[str, dict], facts: dict) -> str:
    base = summary["0007"]["calls_per_s"]
    goal = 2 * base
    lines = [
        "# checkin(): how far it can go on this machine",
        "",
        f"`python -m bench.checkin_bounds` on {facts['date']} at commit `{facts['commit']}` (head: revision "
        f"{facts['head_revision']}): pgbench, 8 clients, the small data set with a new user at every call, a "
        f"warm-up of each variant, then {facts['rounds']} rounds of {facts['seconds']} s, each round starting one "
        "variant further on. Medians of the rounds; each ratio is the median of the rounds' ratios to head's run "
        "in the same round.",
        "",
        "| variant | calls/s | by round | ÷ head (range) | PostgreSQL CPU ms/call | WAL KB/call | accepted "
        "| unlocks per check-in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lo, hi = s["ratio_range"]
        lines.append(
            f"| {name} | {s['calls_per_s']:,.0f} | {min(s['by_round']):,.0f}–{max(s['by_round']):,.0f} | "
            f"{s['ratio_to_head']:.3f} ({lo:.2f}–{hi:.2f}) | {s['postgres_cpu_ms_per_call']:.2f} | "
            f"{s['wal_kb_per_call']:.1f} | {s['accepted_share']:.0%} | {s['unlocks_per_checkin']:.2f} |"
        )
    one = summary["one statement"]["calls_per_s"]
    lines += [
        "",
        f"Goal 1 (twice 0007's calls/s) is **{goal:,.0f} calls/s** here: {goal / summary['head']['calls_per_s']:.2f}× "
        f"head, and {goal / one:.0%} of what the one-statement transaction manages while doing a fraction of the "
        "work (bench/one_statement.sql says what it leaves out).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkin_bounds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    DATA_DIR.mkdir(exist_ok=True)
    url = database_url(QUICK_PLAN.database)
    with progress_bars(console) as progress:
        seed_main_database(QUICK_PLAN, progress)
    installed = baseline.install(url)
    install_without_counters(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        settle(conn)
    runs = measure(url, args.rounds, args.seconds, console)
    summary = summarize(runs)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "head_revision": installed["head_revision"],
        "rounds": args.rounds,
        "seconds": args.seconds,
        "wall_s": round(time.monotonic() - started, 1),
    }
    folder = DATA_DIR / "bounds"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps({"facts": facts, "summary": summary, "runs": runs}, indent=1) + "\n")
    (folder / "latest.md").write_text(markdown(summary, facts))
    console.print(markdown(summary, facts))
    console.print(f"wrote {folder / 'latest.md'}")


if __name__ == "__main__":
    main()
