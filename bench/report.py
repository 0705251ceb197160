"""Turning the runs into figures: medians, the targets with PASS/MISS and their margins, and the
report as JSON, Markdown (bench/results/latest.*) and rich tables on the terminal."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.runners import LoadResult

CHECKIN_OK = {201}  # a rejected check-in is a 201 too: its body says why


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def summarize(runs: list[LoadResult], expected: set[int]) -> dict[str, Any]:
    """Medians over repeated runs of one point."""
    return {
        "runs": len(runs),
        "connections": runs[0].connections,
        "offered_rps": runs[0].offered_rps,
        "rps": median([r.rps for r in runs]),
        **{key: median([r.latency_ms[key] for r in runs]) for key in ("p50", "p95", "p99")},
        "p99_range": (min(r.latency_ms["p99"] for r in runs), max(r.latency_ms["p99"] for r in runs)),
        "rps_range": (min(r.rps for r in runs), max(r.rps for r in runs)),
        "checkpoint_mb": round(sum(r.checkpoint_mb for r in runs), 1),
        "errors": sum(r.errors(expected) for r in runs),
        "requests": sum(r.requests for r in runs),
        "db_connections_opened": None
        if runs[0].db_connections_opened is None
        else sum(r.db_connections_opened for r in runs),
    }


def cpu_breakdown(runs: list[LoadResult]) -> dict[str, float]:
    keys = runs[0].cpu_ms.keys()
    return {key: median([r.cpu_ms[key] for r in runs]) for key in keys}


CHECKIN_RATIO_FLOOR = 0.95  # head's checkin() calls/s within 5% of the baseline's


def before_after(baseline: list[LoadResult], head: list[LoadResult]) -> dict[str, Any]:
    """Medians of each side and head / baseline; per round too, to show how much one pair may differ.
    CPU per call beside calls/s: it moves much less than throughput when something else shares the machine."""
    summary = {
        side: summarize(runs, set()) | {"cpu_ms": cpu_breakdown(runs)}
        for side, runs in (("baseline", baseline), ("head", head))
    }
    ratio = summary["head"]["rps"] / summary["baseline"]["rps"]
    return summary | {
        "ratio": round(ratio, 3),
        "postgres_cpu_ratio": round(
            summary["head"]["cpu_ms"]["postgres"] / summary["baseline"]["cpu_ms"]["postgres"], 3
        ),
        "round_ratios": [round(h.rps / b.rps, 3) for b, h in zip(baseline, head, strict=True)],
        "passed": ratio >= CHECKIN_RATIO_FLOOR,
    }


def before_after_outcomes_table(c: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """What each side's check-ins came to: both must run the same mix for the ratio to mean anything."""
    base, head = c["outcomes"]["baseline"], c["outcomes"]["head"]

    def cell(v: float | None, key: str) -> str:
        return "" if v is None else f"{v:.3f}" if key == "unlocked_per_checkin" else f"{v:.1%}"

    keys = sorted(base.keys() | head.keys(), key=lambda k: (k == "unlocked_per_checkin", k))
    return (
        "checkin() before/after: what the calls came to (share of check-ins)",
        ["outcome", "baseline", "head"],
        [[k, cell(base.get(k), k), cell(head.get(k), k)] for k in keys],
    )


def before_after_target(c: dict[str, Any]) -> dict[str, Any]:
    ratio = c["ratio"]
    return target(
        "checkin() calls/s, head vs baseline (pgbench, same run)",
        f"within 5% (ratio ≥ {CHECKIN_RATIO_FLOOR})",
        f"{ratio:.3f} ({c['head']['rps']:.0f} / {c['baseline']['rps']:.0f})",
        c["passed"],
        f"{(ratio - CHECKIN_RATIO_FLOOR) * 100:+.1f} points",
    )


def before_after_table(c: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    def row(label: str, p: dict[str, Any]) -> list[str]:
        low, high = p["rps_range"]
        cpu = p["cpu_ms"]
        return [
            label,
            f"{p['rps']:.0f}",
            f"{low:.0f}–{high:.0f}",
            f"{p['p50']:.1f}",
            f"{p['p99']:.1f}",
            f"{cpu['postgres']:.2f}",
            f"{cpu['other']:.2f}",
            str(p["errors"]),
        ]

    ratios = c["round_ratios"]
    head = f"head: alembic revision {c['head_revision']}" + (" (the same function text)" if c["unchanged"] else "")
    if c["head_drift"]:
        head += " (the sources in migrations/sql/functions differ from it)"
    return (
        f"checkin() before/after (pgbench, {c['clients']} clients, {c['rounds']} alternating rounds of "
        f"{c['duration_s']} s)",
        [
            "checkin()",
            "calls/s",
            "calls/s by round",
            "p50 ms",
            "p99 ms",
            "PostgreSQL CPU ms/call",
            "other processes' CPU ms/call",
            "errors",
        ],
        [
            row(f"baseline: {', '.join(c['baseline_sources'])}", c["baseline"]),
            row(head, c["head"]),
            [
                f"head / baseline (pass mark ≥ {CHECKIN_RATIO_FLOOR})",
                f"{c['ratio']:.3f}",
                f"{min(ratios):.3f}–{max(ratios):.3f}",
                "",
                "",
                f"{c['postgres_cpu_ratio']:.3f}",
                "",
                "",
            ],
        ],
    )


MATCH_RATIO_GOAL = 2.0  # matching at the largest venue count within 2× of the smallest


def match_before_after(matching: list[dict[str, Any]]) -> dict[str, Any]:
    """Per venue count, each side's figures; the ratio of the largest count's median to the smallest's,
    per side and way of planning."""
    first, last = matching[0], matching[-1]
    ratios = {
        f"{side}_{prefix}ratio": round(last[side][f"{prefix}median_us"] / first[side][f"{prefix}median_us"], 2)
        for side in ("baseline", "head")
        for prefix in ("", "generic_")
    }
    return {
        "baseline_source": first["baseline_source"],
        "span": f"{first['venues']:,} → {last['venues']:,} venues",
        "by_venues": matching,
        **ratios,
    }


def match_before_after_targets(m: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for side in ("head", "baseline"):
        ratio = m[f"{side}_ratio"]
        out.append(
            target(
                f"matching time {m['span']}, {side}",
                f"within {MATCH_RATIO_GOAL:.0f}×",
                f"{ratio:.2f}×",
                ratio <= MATCH_RATIO_GOAL,
                f"{MATCH_RATIO_GOAL - ratio:+.2f}× to spare"
                if ratio <= MATCH_RATIO_GOAL
                else f"{ratio - MATCH_RATIO_GOAL:.2f}× over",
            )
        )
    return out


def match_before_after_table(m: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    rows = []
    firsts = {side: m["by_venues"][0][side] for side in ("baseline", "head")}
    for by in m["by_venues"]:
        for side in ("baseline", "head"):
            p, first = by[side], firsts[side]
            rows.append(
                [
                    f"{by['venues']:,}",
                    "baseline: " + m["baseline_source"] if side == "baseline" else "head",
                    f"{p['median_us']:.0f}",
                    f"{p['p95_us']:.0f}",
                    f"{p['median_us'] / first['median_us']:.2f}×",
                    f"{p['generic_median_us']:.0f}",
                    f"{p['generic_p95_us']:.0f}",
                    f"{p['generic_median_us'] / first['generic_median_us']:.2f}×",
                    f"{p['pages_per_match']:.1f}",
                    f"{p['generic_pages_per_match']:.1f}",
                    f"{p['matched']}/{by['points']}",
                ]
            )
        rows.append(
            [
                f"{by['venues']:,}",
                "head / baseline",
                f"{by['head']['median_us'] / by['baseline']['median_us']:.2f}",
                "",
                "",
                f"{by['head']['generic_median_us'] / by['baseline']['generic_median_us']:.2f}",
                "",
                "",
                "",
                "",
                f"different choices: {by['differing_choices']}, {by['generic_differing_choices']}",
            ]
        )
    return (
        "Venue match before/after, timed in PostgreSQL (as checkin() runs it, and with a generic plan)",
        [
            "venues",
            "match_venue()",
            "median µs",
            "p95 µs",
            "vs smallest",
            "median µs, generic",
            "p95 µs, generic",
            "vs smallest, generic",
            "pages/match",
            "pages/match, generic",
            "matched",
        ],
        rows,
    )


def outcome_mix(runs: list[LoadResult]) -> dict[str, float]:
    """Share of check-ins by outcome (accepted, rejected:<reason>), and unlocked codes per check-in."""
    labels: dict[str, int] = {}
    for run in runs:
        for key, n in run.labels.items():
            labels[key] = labels.get(key, 0) + n
    checkins = sum(n for key, n in labels.items() if key != "unlocked")
    mix = {key: round(n / checkins, 3) for key, n in sorted(labels.items()) if key != "unlocked"}
    mix["unlocked_per_checkin"] = round(labels.get("unlocked", 0) / max(checkins, 1), 3)
    return mix


def target(name: str, goal: str, measured: str, passed: bool, margin: str) -> dict[str, Any]:
    return {
        "target": name,
        "goal": goal,
        "measured": measured,
        "result": "PASS" if passed else "MISS",
        "margin": margin,
    }


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    ratio = s["checkin_saturation"]["rps"] / s["database_ceiling"]["rps"]
    p99 = s["checkin_at_70"]["p99"]
    errors = s["errors"]
    match_ratio = s["matching_ratio"]
    stats_ms = s["stats_median_ms"]
    share = 0.6  # issue 15's goal 2 (it was 50%)
    return [
        target(
            "check-in throughput vs database ceiling",
            f"≥ {share:.0%} of pgbench",
            f"{ratio:.0%}",
            ratio >= share,
            f"{(ratio - share) * 100:+.0f} points",
        ),
        target(
            "p99 at 70% of saturation",
            "< 50 ms",
            f"{p99:.1f} ms",
            p99 < 50,
            f"{50 - p99:.1f} ms to spare" if p99 < 50 else f"{p99 - 50:.1f} ms over ({p99 / 50:.1f}×)",
        ),
        target(
            "errors (other than intended rejections)",
            "0",
            str(errors["total"]),
            errors["total"] == 0,
            "none" if errors["total"] == 0 else ", ".join(f"{k}: {v}" for k, v in errors.items() if v and k != "total"),
        ),
        target(
            f"matching time {s['matching_span']}",
            "within 2×",
            f"{match_ratio:.2f}×",
            match_ratio <= 2,
            f"{2 - match_ratio:+.2f}× to spare" if match_ratio <= 2 else f"{match_ratio - 2:.2f}× over",
        ),
        before_after_target(s["checkin_before_after"]),
        target(
            "stats of a 10M-event campaign",
            "< 200 ms (median)",
            f"{stats_ms:.1f} ms",
            stats_ms < 200,
            f"{200 - stats_ms:.0f} ms to spare" if stats_ms < 200 else f"{stats_ms - 200:.0f} ms over",
        ),
    ]


# --------------------------------------------------------------------------- rendering


def _rows_load(points: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    def spread(point: dict[str, Any], key: str) -> str:
        low, high = point[key]
        return f"{low:.0f}–{high:.0f}" if point["runs"] > 1 else ""

    return [
        [
            name,
            f"{p['offered_rps']:.0f}" if p.get("offered_rps") else "max",
            f"{p['rps']:.0f}",
            spread(p, "rps_range"),
            f"{p['p50']:.1f}",
            f"{p['p95']:.1f}",
            f"{p['p99']:.1f}",
            spread(p, "p99_range"),
            str(p["errors"]),
            "" if p["db_connections_opened"] is None else f"{p['db_connections_opened'] / p['requests'] * 1000:.1f}",
            f"{p['checkpoint_mb']:.0f}",
            str(p["runs"]),
        ]
        for name, p in points
    ]


LOAD_HEADER = [
    "point",
    "offered/s",
    "achieved/s",
    "achieved/s, runs",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "p99 ms, runs",
    "errors",
    "new DB connections per 1,000",
    "checkpoint writes MB",
    "runs",
]


def _before_after_tables(c: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    return [before_after_table(c)] + ([before_after_outcomes_table(c)] if "outcomes" in c else [])


def tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table, shared by the Markdown and the terminal output."""
    s = results["summary"]
    machine = results["machine"]
    out = [
        (
            "Targets",
            ["target", "goal", "measured", "result", "margin"],
            [[t["target"], t["goal"], t["measured"], t["result"], t["margin"]] for t in results["targets"]],
        )
    ]
    machine_table = ("Machine", ["fact", "value"], [[k, str(v)] for k, v in machine.items()])
    if results.get("only") == "checkin-db":
        return [*out, *_before_after_tables(s["checkin_before_after"]), machine_table]
    if results.get("only") == "match":
        return [*out, match_before_after_table(s["match_before_after"]), machine_table]
    checkin_points = [("saturation", s["checkin_saturation"])] + [
        (f"{int(share * 100)}% of saturation", point) for share, point in s["checkin_fixed"]
    ]
    out.append(("Check-ins: POST /v1/checkins", LOAD_HEADER, _rows_load(checkin_points)))
    ceilings = [
        ["check-ins over HTTP (saturation)", f"{s['checkin_saturation']['rps']:.0f}", "1.00"],
        [
            "framework ceiling: GET /healthz, same server",
            f"{s['framework_ceiling']['rps']:.0f}",
            f"{s['checkin_saturation']['rps'] / s['framework_ceiling']['rps']:.2f}",
        ],
        [
            "database ceiling: pgbench SELECT checkin(...)",
            f"{s['database_ceiling']['rps']:.0f}",
            f"{s['checkin_saturation']['rps'] / s['database_ceiling']['rps']:.2f}",
        ],
    ]
    out.append(
        ("Ceilings (check-ins per second as a share of each)", ["what", "per second", "check-ins / this"], ceilings)
    )
    out.append(
        (
            "Other endpoints",
            LOAD_HEADER,
            _rows_load(
                [
                    ("POST /v1/redemptions", s["redemption"]),
                    ("GET /v1/venues/nearby", s["nearby"]),
                    ("GET /healthz", s["framework_ceiling"]),
                    ("pgbench checkin()", s["database_ceiling"]),
                    ("pgbench checkin(), a new connection per call", s["database_new_connection"]),
                ]
            ),
        )
    )
    out += _before_after_tables(s["checkin_before_after"])
    hot = s["hot_code"]
    out.append(
        (
            "One code, many tills at once",
            ["clients", "requests", "201", "409", "other"],
            [[str(hot["clients"]), str(hot["requests"]), str(hot["201"]), str(hot["409"]), str(hot["other"])]],
        )
    )
    first = s["matching"][0]
    out.append(
        (
            "Venue match (inside checkin()), timed in PostgreSQL",
            [
                "venues",
                "median µs",
                "p95 µs",
                "vs smallest",
                "median µs, generic plan",
                "vs smallest, generic plan",
                "pages touched",
                "pages not in shared_buffers",
                "matched",
            ],
            [
                [
                    f"{m['venues']:,}",
                    f"{m['median_us']:.0f}",
                    f"{m['p95_us']:.0f}",
                    f"{m['median_us'] / first['median_us']:.2f}×",
                    f"{m['generic_median_us']:.0f}",
                    f"{m['generic_median_us'] / first['generic_median_us']:.2f}×",
                    f"{m['pages_per_match']:.1f}",
                    f"{m['pages_read_per_match']:.2f}",
                    f"{m['matched']}/{m['points']}",
                ]
                for m in s["matching"]
            ],
        )
    )
    st = s["stats"]
    out.append(
        (
            "Stats endpoint, campaign with bulk-generated events",
            ["events", "median ms", "p95 ms", "min ms", "calls"],
            [
                [
                    f"{results['seed']['main']['stats_events']:,}",
                    f"{st['median_ms']:.1f}",
                    f"{st['p95_ms']:.1f}",
                    f"{st['min_ms']:.1f}",
                    str(st["calls"]),
                ]
            ],
        )
    )

    def cpu_cells(cpu: dict[str, float]) -> list[str]:
        return [
            f"{total_cpu(cpu):.2f}",
            *(f"{v:.2f}" if k != "machine_busy_share" else f"{v:.0%}" for k, v in cpu.items()),
        ]

    cpu = s["cpu_ms_per_checkin"]
    out.append(
        (
            "CPU per check-in at saturation (ms; two cores give 2,000 ms a second)",
            ["total", *cpu.keys()],
            [cpu_cells(cpu)],
        )
    )
    cpu_db, cpu_new = s["cpu_ms_per_pgbench_call"], s["cpu_ms_per_pgbench_call_new_connection"]
    out.append(
        (
            "CPU per pgbench checkin() call (ms; with -C, one-call backends end up in 'other')",
            ["connection", "total", *cpu_db.keys()],
            [[label, *cpu_cells(cpu)] for label, cpu in (("kept", cpu_db), ("new for each call (-C)", cpu_new))],
        )
    )
    out.append(
        (
            "Check-in outcomes at saturation (share of 201s)",
            ["outcome", "share"],
            [[k, f"{v:.1%}" if k != "unlocked_per_checkin" else f"{v:.3f}"] for k, v in s["outcomes"].items()],
        )
    )
    profile = results.get("profile")
    if profile:
        out.append(
            (
                f"py-spy, one worker at saturation: innermost frame by package ({profile['samples']} samples, "
                f"worker busy {profile['busy_share']:.0%})",
                ["package", "share"],
                [[p["frame"], f"{p['share']:.1%}"] for p in profile["by_package"]],
            )
        )
        out.append(
            (
                "py-spy: hottest innermost frames",
                ["frame", "share"],
                [[p["frame"], f"{p['share']:.1%}"] for p in profile["self"]],
            )
        )
        out.append(
            (
                "py-spy: hottest frames anywhere on the stack",
                ["frame", "share"],
                [[p["frame"], f"{p['share']:.1%}"] for p in profile["inclusive"]],
            )
        )
    out.append(machine_table)
    return out


PROFILE_FOCUS_LABELS = {
    "solve_dependencies (fastapi/dependencies/utils.py)": "in FastAPI resolving dependencies (auth included)",
    "verify_token (core/auth.py)": "in JWT verification (core/auth.py: verify_token)",
    "run_in_threadpool (starlette/concurrency.py)": "in handing sync (`def`) dependencies to the thread pool",
    "check_in (offers/checkin.py)": "in offers/checkin.py: check_in (Redis and the database call)",
    "AsyncConnection.execute (sqlalchemy/ext/asyncio/engine.py)": (
        "in SQLAlchemy executing the check-in's statement (psycopg and the greenlet bridge included)"
    ),
    "AbstractConnection._send_packed_command (redis/asyncio/connection.py)": (
        "in redis-py writing commands (uvloop writes to the loopback socket with the GIL held)"
    ),
    "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py)": "in uvicorn writing responses",
    "serialize_response (fastapi/routing.py)": "in FastAPI validating responses",
}


def total_cpu(cpu_ms: dict[str, float]) -> float:
    return sum(v for k, v in cpu_ms.items() if k != "machine_busy_share")


def where_time_goes(results: dict[str, Any]) -> list[str]:
    """The figures behind a miss, in sentences: CPU per request against the database's own cost,
    the profile's biggest items, and what re-planning costs the venue match."""
    s = results["summary"]
    cpu, db = s["cpu_ms_per_checkin"], s["cpu_ms_per_pgbench_call"]
    spent = total_cpu(cpu)
    lines = [
        f"Each check-in over HTTP at saturation costs the machine {spent:.2f} ms of CPU (both cores were "
        f"{cpu['machine_busy_share']:.0%} busy): the service {cpu['api']:.2f} ms, PostgreSQL {cpu['postgres']:.2f} ms, "
        f"Redis {cpu['redis']:.2f} ms, wrk {cpu['wrk']:.2f} ms, kernel interrupts {cpu['interrupts']:.2f} ms, "
        f"other processes {cpu['other']:.2f} ms. The same call under pgbench costs PostgreSQL {db['postgres']:.2f} ms. "
        f"Two cores give 2,000 ms of CPU a second, so {spent:.2f} ms per check-in caps it near "
        f"{2000 / spent:,.0f}/s, and PostgreSQL alone ({db['postgres']:.2f} ms) near {2000 / db['postgres']:,.0f}/s: "
        f"the service's own CPU per check-in is {cpu['api'] / db['postgres']:.1f}× the database work it asks for.",
    ]
    saturation = s["checkin_saturation"]
    opened = saturation["db_connections_opened"] / saturation["requests"]
    # A backend that lives for one call ends before /proc is sampled again: price it by the whole machine.
    extra_ms = total_cpu(s["cpu_ms_per_pgbench_call_new_connection"]) - total_cpu(db)
    if opened > 0.001:
        lines.append(
            f"The service opened {opened * 1000:.1f} new database connections per 1,000 check-ins at saturation "
            f"(about {opened * saturation['rps']:.1f} a second): a pool that may open connections beyond its size "
            "under a burst (core/db.py: max_overflow) closes them when they are returned, and the next burst "
            "opens others. A new connection's first check-in is expensive: a new backend starts, loads "
            "PostGIS, compiles checkin() and plans its statements. Under pgbench -C (a new connection per call) a "
            f"call costs the machine {extra_ms:.1f} ms more CPU and takes {s['database_new_connection']['p50']:.0f} ms "
            f"(median) instead of {s['database_ceiling']['p50']:.1f} ms: about {opened * extra_ms:.2f} ms of CPU per "
            f"check-in on average (PostgreSQL's CPU per check-in is {cpu['postgres'] - db['postgres']:.2f} ms higher "
            "over HTTP than under pgbench), and a stall of tens of milliseconds for each request that opens one. "
            "The fixed-rate rows show it: no new connections and a low p99 while the load fits in the pools, "
            "both rising together beyond."
        )
    low, high = saturation["rps_range"]
    if high > 1.15 * low:
        lines.append(
            f"Saturation throughput went from {low:.0f}/s to {high:.0f}/s between runs of the same load, "
            f"and the service's CPU per check-in with it: this machine's speed varies by that much "
            "from one 10-second window to the next, so single runs differ and medians are quoted."
        )
    at_70 = s["checkin_at_70_runs"]
    if len(at_70) > 1 and max(r["p99"] for r in at_70) > 2 * min(r["p99"] for r in at_70):
        lines.append(
            "The p99 at 70% of saturation varies from run to run: "
            + "; ".join(
                f"{r['p99']:.0f} ms with {r['rps']:.0f}/s served of {r['offered_rps']:.0f}/s offered, "
                f"{r['cpu_ms']:.2f} ms of CPU per check-in, both cores {r['busy']:.0%} busy, "
                f"{r['checkpoint_mb']:.0f} MB written by the checkpointer"
                for r in at_70
            )
            + f". A check-in costs more CPU at a paced rate than at saturation ({spent:.2f} ms), where each wake-up "
            "of the event loops and backends serves several requests: 70% of the saturation rate keeps the cores "
            "busier than 70%, and in a slower window of this machine it comes close to that window's own "
            "saturation, where the queue, hence the tail, grows fast."
        )
    if cpu["other"] > 0.1 * spent:
        lines.append(
            f"{cpu['other'] / spent:.0%} of the CPU during the saturation runs went to processes that are not "
            "part of the bench (another test suite on the same machine, for instance): those runs were "
            "disturbed, and their throughput is lower than on a quiet machine."
        )
    profile = results.get("profile")
    if profile:
        parts = [
            f"{share:.0%} {PROFILE_FOCUS_LABELS[name]}" for name, share in profile["focus"].items() if share >= 0.02
        ]
        lines.append(
            f"py-spy on one worker: it held the GIL {profile['busy_share']:.0%} of the time; of that, "
            + "; ".join(parts)
            + ". The hottest frames are in the profile tables."
        )
    matching = s["matching"]
    worst = max(matching, key=lambda m: m["median_us"] / m["generic_median_us"])
    if worst["median_us"] > 1.3 * worst["generic_median_us"]:
        lines.append(
            f"Venue match: at {worst['venues']:,} venues it takes {worst['median_us']:.0f} µs as checkin() runs it but "
            f"{worst['generic_median_us']:.0f} µs with a generic plan. PL/pgSQL's plan cache keeps choosing a custom "
            "plan for this statement (the generic plan's estimate for ST_DWithin with a parameter radius is far "
            "worse), so it is planned again on every check-in. With a generic plan the match grows "
            f"{matching[-1]['generic_median_us'] / matching[0]['generic_median_us']:.2f}× from "
            f"{matching[0]['venues']:,} to {matching[-1]['venues']:,} venues."
        )
    if matching[-1]["pages_per_match"] > 2 * matching[0]["pages_per_match"]:
        lines.append(
            f"Venue match pages: one match touches {matching[0]['pages_per_match']:.1f} pages at "
            f"{matching[0]['venues']:,} venues and {matching[-1]['pages_per_match']:.1f} at "
            f"{matching[-1]['venues']:,} ({matching[-1]['pages_read_per_match']:.2f} of them from outside "
            "shared_buffers), while it finds about one candidate at every size: the geography GiST index "
            "(3-D boxes over clustered cities) overlaps more as it grows, and the search walks more of it."
        )
    return lines


def markdown(results: dict[str, Any], notes: list[str]) -> str:
    lines = [
        "# checkin-offers bench",
        "",
        f"`{results['command']}` on {results['machine']['date']} at commit `{results['machine']['commit']}`, "
        f"{results['machine']['nproc']} cores, {results['machine']['memory']}. "
        "Medians over the runs of each point; latencies as wrk (or pgbench) measured them.",
        "",
    ]
    for title, header, rows in tables(results):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        lines.append("")
    if not results.get("only"):
        lines += ["## Where the time goes", ""] + [f"- {line}" for line in where_time_goes(results)] + [""]
    lines += ["## How it was measured", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def print_tables(results: dict[str, Any], console: Console) -> None:
    for title, header, rows in tables(results):
        table = Table(title=title, title_justify="left")
        for column in header:
            table.add_column(column)
        for row in rows:
            style = "green" if "PASS" in row else "red" if "MISS" in row else None
            table.add_row(*row, style=style)
        console.print(table)


def write(results: dict[str, Any], notes: list[str], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps({**results, "notes": notes}, indent=2, default=str) + "\n")
    md_path.write_text(markdown(results, notes))
    return json_path, md_path
