"""Measurements that are not load: the venue match at several venue counts (and before/after a change to
it), and the stats endpoint."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
from rich.progress import Progress

from bench.seed import ROOT, libpq_url
from bench.workload import setting_default

MATCH_SQL = Path(__file__).resolve().parent / "match.sql"


# The match before revision 0010 (revision 0009 installs 0002's pinned copy): compared with the current one
# by `python -m bench --only match`, installed in a schema of its own and found first on the search_path
# of its sessions, as bench/baseline.py does for checkin() (its helpers and tables are public's).
MATCH_BASELINE = ROOT / "migrations" / "sql" / "0002" / "functions" / "match_venue.sql"
MATCH_BASELINE_SCHEMA = "bench_match_baseline"
PLAN_MODES = (("auto", ""), ("force_generic_plan", "generic_"))


def match_points(url: str, points: int) -> tuple[int, list[list]]:
    """The venue count, and the match's arguments for random points inside random venues (accuracy
    5-40 m), as columns, with the limits checkin() is called with: the service's settings, as
    bench/workload.py passes them to pgbench."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MATCH_SQL.read_text())
        venues = conn.execute("SELECT count(*) FROM venues WHERE deleted_at IS NULL").fetchone()[0]
        rows = conn.execute(
            """
            SELECT ST_X(p), ST_Y(p), 5 + 35 * random()
            FROM (SELECT ST_PointOnSurface(fence::geometry) AS p FROM venues ORDER BY random() LIMIT %s) s
        """,
            (points,),
        ).fetchall()
    limits = [setting_default("match_accuracy_cap_m"), setting_default("nearest_venue_radius_m")]
    return venues, [list(column) for column in zip(*rows, strict=True)] + limits


class MatchTimer:
    """One connection timing match_venue() over the same points pass after pass, in one plan cache mode,
    with the given search_path (None: the database's, so public's match_venue)."""

    def __init__(self, url: str, columns: list[list], mode: str, search_path: str | None = None) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"SET plan_cache_mode = {mode}")
        if search_path:
            self.conn.execute(f"SET search_path = {search_path}")
        self.columns = columns
        self.medians: list[float] = []
        self.p95s: list[float] = []
        self.choices: list[tuple[bool, str | None]] = []  # matched, and the venue chosen (or the nearest)

    def run(self, counted: bool = True) -> None:
        timings = self.conn.execute(
            "SELECT us, matched, venue_id FROM bench_probe.bench_match_timings(%s, %s, %s, %s, %s)", self.columns
        ).fetchall()
        if counted:
            us = np.array([t[0] for t in timings])
            self.medians.append(float(np.median(us)))
            self.p95s.append(float(np.percentile(us, 95)))
            self.choices = [(t[1], t[2] and str(t[2])) for t in timings]

    def result(self, prefix: str) -> dict:
        """Medians over the passes of each pass's median and p95; pages one match touches (EXPLAIN BUFFERS
        of one more pass), and how many of them were not in shared_buffers."""
        plan = self.conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
            "SELECT count(*) FROM bench_probe.bench_match_timings(%s, %s, %s, %s, %s)",
            self.columns,
        ).fetchone()[0][0]["Plan"]
        self.conn.close()
        points = len(self.columns[0])
        return {
            f"{prefix}median_us": round(statistics.median(self.medians), 1),
            f"{prefix}p95_us": round(statistics.median(self.p95s), 1),
            f"{prefix}pages_per_match": round((plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]) / points, 1),
            f"{prefix}pages_read_per_match": round(plan["Shared Read Blocks"] / points, 2),
        }


def time_matches(database_url: str, points: int, passes: int = 3) -> dict:
    """Median and p95 microseconds of the match for random points inside random venues, timed in
    PostgreSQL: as checkin() runs it (PL/pgSQL's plan cache chooses between re-planning each call
    and a generic plan), and once more with a generic plan forced, which leaves out planning.
    Each way on its own connection: one warm-up pass, then `passes` timed passes over the same points."""
    url = libpq_url(database_url)
    venues, columns = match_points(url, points)
    result: dict = {"venues": venues, "points": len(columns[0])}
    for mode, prefix in PLAN_MODES:
        timer = MatchTimer(url, columns, mode)
        for i in range(passes + 1):
            timer.run(counted=i > 0)
        result["matched"] = sum(1 for matched, _ in timer.choices if matched)
        result |= timer.result(prefix)
    return result


def install_match_baseline(url: str) -> None:
    """(Re)install the baseline match_venue() in its schema; nothing outside it changes."""
    with psycopg.connect(url) as conn:  # one transaction, committed on leaving
        conn.execute(f"DROP SCHEMA IF EXISTS {MATCH_BASELINE_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {MATCH_BASELINE_SCHEMA}")
        conn.execute(f"SET LOCAL search_path = {MATCH_BASELINE_SCHEMA}, public")  # the CREATE lands there
        conn.execute(MATCH_BASELINE.read_bytes())


def compare_matches(database_url: str, points: int, passes: int, progress: Progress | None = None) -> dict:
    """The baseline match_venue() and the current one on the same random points of one database, each way
    of planning on connections of its own, passes alternating between the two (each pair in the other
    order than the one before) after a warm-up pass of each; and whether both chose the same venue."""
    url = libpq_url(database_url)
    install_match_baseline(url)
    venues, columns = match_points(url, points)
    sides = {"baseline": f"{MATCH_BASELINE_SCHEMA}, public", "head": None}
    result: dict = {
        "venues": venues,
        "points": len(columns[0]),
        "baseline_source": str(MATCH_BASELINE.relative_to(ROOT)),
    }
    task = (
        progress.add_task(f"match at {venues:,} venues: before/after", total=len(PLAN_MODES) * (passes + 1))
        if progress
        else None
    )
    for mode, prefix in PLAN_MODES:
        timers = {side: MatchTimer(url, columns, mode, search_path) for side, search_path in sides.items()}
        for i in range(passes + 1):
            for side in ("baseline", "head") if i % 2 == 0 else ("head", "baseline"):
                timers[side].run(counted=i > 0)
            if progress and task is not None:
                progress.advance(task)
        chosen = [timer.choices for timer in timers.values()]
        result[f"{prefix}differing_choices"] = sum(1 for a, b in zip(*chosen, strict=True) if a != b)
        for side, timer in timers.items():
            result.setdefault(side, {"matched": sum(1 for matched, _ in timer.choices if matched)})
            result[side] |= timer.result(prefix)
    return result


def time_stats(base_url: str, token: str, campaign_id: str, calls: int) -> dict:
    """GET the campaign's stats `calls` times after two warm-ups; milliseconds as the client sees them."""
    timings, body = [], None
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for i in range(calls + 2):
            started = time.perf_counter()
            response = client.get(f"/v1/campaigns/{campaign_id}/stats")
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            body = response.json()
            if i >= 2:
                timings.append(elapsed)
    return {
        "calls": calls,
        "median_ms": round(statistics.median(timings), 1),
        "p95_ms": round(float(np.percentile(timings, 95)), 1),
        "min_ms": round(min(timings), 1),
        "response_bytes": len(response.content),
        "by_day_rows": len(body["by_day"]),
        "by_venue_rows": len(body["by_venue"]),
        "checkins_accepted": body["funnel"]["checkins_accepted"],
        "unique_users": body["funnel"]["unique_users"],
        "status": body["status"],
    }
