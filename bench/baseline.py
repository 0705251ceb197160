"""checkin() before and after a change, in one bench run: the check-in functions of a reference version
(the baseline) installed beside the current ones in the same database, and pgbench running each
checkin() in turn on the same seeded data.

The baseline lives in its own schema and uses the same public tables. PL/pgSQL and SQL functions
resolve the names in their bodies (tables, and the helpers checkin() calls: rule_met, unlock_offer...)
through the session's search_path when they run, not through the schema they were created in: so the
baseline's pgbench sessions connect with search_path = bench_baseline, public, where its checkin()
calls its own helpers and public's tables, while the current checkin() runs in ordinary sessions, as the
API calls it. Setting search_path on the functions themselves would do the same at a cost on every call
(and would keep SQL functions from being inlined), which the current functions do not pay.

A new baseline, once a change to the hot path has landed: SOURCES as that version installs its functions,
CALL as offers/checkin.py called checkin() then (bench/README.md).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
from rich.progress import Progress

from bench import report
from bench.runners import LoadResult, run_pgbench
from bench.seed import ROOT, libpq_url
from bench.workload import pgbench_script
from core.sql_functions import function_drift

SCHEMA = "bench_baseline"
SEARCH_PATH = f"{SCHEMA},public"

# The reference version's functions, installed in this order: a file, or a directory standing for its
# *.sql files in name order (files with CREATE OR REPLACE replace what earlier ones defined, so a revision
# that pins only the functions it changes goes after the one it builds on). Revision 0007, the last
# landed change to the check-in path: 0002's functions, then those 0003 and 0007 changed (0004 changed
# only redeem(), 0005 and 0006 no function).
SOURCES: tuple[Path, ...] = (
    ROOT / "migrations" / "sql" / "0002" / "functions",
    ROOT / "migrations" / "sql" / "0003" / "functions",
    ROOT / "migrations" / "sql" / "0007" / "functions",
)

# How the API called checkin() at that version (offers/checkin.py: CHECKIN_SQL then): 15 parameters, the
# last two as one venue_match_limits value.
CALL = """
    SELECT r ->> 'outcome' AS outcome, r #>> '{response,status}' AS status, (r -> 'response')::text AS body
    FROM checkin(:user, :key, :fingerprint, :lon, :lat, :accuracy_m, :observed_at, :venue_id, :device_id, :mocked,
                 :reason, CAST(:detail AS jsonb), :max_speed_kmh, make_interval(secs => :cooldown_s),
                 CAST(ROW(:match_accuracy_cap_m, :nearest_venue_radius_m) AS venue_match_limits)) AS r
"""

# A trigger function comes with CREATE TRIGGER on a shared table: installed here it would take over
# the table's trigger (and DROP SCHEMA ... CASCADE would then drop it). The triggers stay the current ones.
DEFINES_TRIGGER = re.compile(r"RETURNS\s+trigger\b", re.I)


def outside_sql(schema: str) -> str:
    """What installing functions into `schema` must leave alone: every function outside it, every trigger."""
    return f"""
        SELECT md5(concat(
            (SELECT string_agg(oid || ':' || md5(prosrc), ',' ORDER BY oid) FROM pg_proc
             WHERE pronamespace <> '{schema}'::regnamespace),
            (SELECT string_agg(oid || ':' || tgfoid, ',' ORDER BY oid) FROM pg_trigger)))
    """


# Whether every baseline function has a current one of the same name, arguments and body: if so the
# comparison is of one text against itself, and the ratio shows the noise.
UNCHANGED_SQL = f"""
    SELECT count(*), bool_and(h.prosrc IS NOT DISTINCT FROM b.prosrc)
    FROM pg_proc b
    LEFT JOIN pg_proc h ON h.pronamespace = 'public'::regnamespace AND h.proname = b.proname
         AND pg_get_function_identity_arguments(h.oid) = pg_get_function_identity_arguments(b.oid)
    WHERE b.pronamespace = '{SCHEMA}'::regnamespace
"""


def source_files() -> list[Path]:
    files: list[Path] = []
    for source in SOURCES:
        if source.is_dir():
            files += [p for p in sorted(source.glob("*.sql")) if not DEFINES_TRIGGER.search(p.read_text())]
        else:
            files.append(source)
    return files


def install_functions(database_url: str, schema: str, texts: list[str], what: str) -> None:
    """(Re)create `schema` holding the functions of `texts` (each file's SQL), all or nothing, and make
    sure nothing outside the schema changed: the files must create their functions unqualified."""
    with psycopg.connect(libpq_url(database_url)) as conn:  # one transaction, committed on leaving
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET LOCAL search_path = {schema}, public")  # unqualified CREATEs land in the schema
        conn.execute("SET LOCAL check_function_bodies = off")  # as migrations do: files in any order
        outside = conn.execute(outside_sql(schema)).fetchone()[0]
        for text in texts:
            conn.execute(text)
        if conn.execute(outside_sql(schema)).fetchone()[0] != outside:
            raise RuntimeError(
                f"installing {what} changed functions or triggers outside the {schema} schema; nothing was "
                "installed. Its files must create their functions unqualified and define no triggers"
            )


def install(database_url: str) -> dict:
    """(Re)install the baseline in its schema, all or nothing; what was installed, for the report."""
    sources = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in SOURCES]
    install_functions(
        database_url, SCHEMA, [p.read_text() for p in source_files()], f"the baseline ({', '.join(sources)})"
    )
    with psycopg.connect(libpq_url(database_url)) as conn:
        functions, unchanged = conn.execute(UNCHANGED_SQL).fetchone()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    return {
        "baseline_schema": SCHEMA,
        "baseline_sources": sources,
        "baseline_functions": functions,
        "head_revision": revision,
        "unchanged": bool(unchanged),
    }


# What the calls of one run did, read back from the tables once it is over (runs follow one another, so
# the rows since its start are its own): the same labels as the HTTP load's (bench/checkin.lua).
OUTCOMES_SQL = """
    SELECT CASE WHEN status = 'accepted' THEN 'accepted' ELSE 'rejected:' || reason END, count(*)
    FROM checkins WHERE received_at >= %(since)s GROUP BY 1
    UNION ALL
    SELECT 'unlocked', count(*) FROM unlocks WHERE unlocked_at >= %(since)s
"""


def compare(
    pgbench: str,
    database_url: str,
    *,
    clients: int,
    rounds: int,
    duration_s: int,
    variables: dict[str, object],
    progress: Progress,
    new_users: bool = False,
) -> tuple[dict, dict[str, list[LoadResult]]]:
    """Install the baseline, then pgbench the baseline's checkin() and the current one (head), `rounds`
    runs of each, back to back; the summary for the report and the runs, each run labelled with what its
    check-ins came to. new_users: a user of their own for every call (bench/workload.py: NEW_USER)."""
    started = time.monotonic()
    facts = install(database_url)
    # Head is what the revisions install (pinned copies), not the sources being edited: say when they differ.
    facts["head_drift"] = str(function_drift(database_url) or "")
    if facts["head_drift"]:
        progress.console.print(
            f"[yellow]head is alembic revision {facts['head_revision']} as pinned; migrations/sql/functions differs "
            f"from it[/] ({facts['head_drift']}): pin the sources in a revision to measure them"
        )
    sides = {
        "baseline": (
            pgbench_script(CALL, origin="bench/baseline.py: CALL", schema=SCHEMA, new_users=new_users),
            {"search_path": SEARCH_PATH},
        ),
        "head": (pgbench_script(new_users=new_users), None),
    }
    task = progress.add_task("checkin() before/after", total=2 * (rounds + 1))

    # `outcomes` reads what each run's calls came to; it is idle while pgbench runs.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as outcomes:

        def run(side: str, name: str, seconds: int) -> LoadResult:
            script, settings = sides[side]
            since = outcomes.execute("SELECT clock_timestamp()").fetchone()[0]
            result = run_pgbench(
                pgbench,
                database_url,
                script,
                name=name,
                clients=clients,
                duration_s=seconds,
                variables=variables,
                progress=progress,
                settings=settings,
            )
            result.labels = {label: n for label, n in outcomes.execute(OUTCOMES_SQL, {"since": since}) if n}
            progress.advance(task)
            return result

        # Not counted: a call that fails shows here, and caches warm for the first counted round.
        for side in sides:
            run(side, f"checkin() {side}: warm-up", max(2, duration_s // 2))
        runs: dict[str, list[LoadResult]] = {side: [] for side in sides}
        # Alternating, and each pair in the other order than the one before (B A, A B, B A...): the tables
        # grow and the machine's speed drifts during the run, and this way neither side is always the later.
        for i in range(rounds):
            for side in ("baseline", "head") if i % 2 == 0 else ("head", "baseline"):
                runs[side].append(run(side, f"checkin() {side}, round {i + 1} of {rounds}", duration_s))
    summary = facts | report.before_after(runs["baseline"], runs["head"])
    summary |= {"rounds": rounds, "duration_s": duration_s, "clients": clients, "new_users": new_users}
    summary["outcomes"] = {side: report.outcome_mix(rs) for side, rs in runs.items()}
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary, runs
