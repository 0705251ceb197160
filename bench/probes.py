"""Measurements that are not load: the venue match at several venue counts, and the stats endpoint."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg

from bench.seed import libpq_url
from bench.workload import setting_default

MATCH_SQL = Path(__file__).resolve().parent / "match.sql"


def time_matches(database_url: str, points: int, passes: int = 3) -> dict:
    """Median and p95 microseconds of the match for random points inside random venues, timed in
    PostgreSQL: as checkin() runs it (PL/pgSQL's plan cache chooses between re-planning each call
    and a generic plan), and once more with a generic plan forced, which leaves out planning.
    Each way on its own connection: one warm-up pass, then `passes` timed passes over the same points."""
    url = libpq_url(database_url)
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
    # the limits checkin() is called with: the service's settings, as bench/workload.py passes them to pgbench
    limits = [setting_default("match_accuracy_cap_m"), setting_default("nearest_venue_radius_m")]
    columns = [list(column) for column in zip(*rows, strict=True)] + limits
    result: dict = {"venues": venues, "points": len(rows)}
    for mode, prefix in (("auto", ""), ("force_generic_plan", "generic_")):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"SET plan_cache_mode = {mode}")
            medians, p95s = [], []
            for i in range(passes + 1):
                timings = conn.execute(
                    "SELECT us, matched FROM bench_probe.bench_match_timings(%s, %s, %s, %s, %s)", columns
                ).fetchall()
                if i == 0:
                    continue
                us = np.array([t[0] for t in timings])
                medians.append(float(np.median(us)))
                p95s.append(float(np.percentile(us, 95)))
                result["matched"] = sum(1 for t in timings if t[1])
            # Pages one match touches, and how many of them were not in shared_buffers.
            plan = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                "SELECT count(*) FROM bench_probe.bench_match_timings(%s, %s, %s, %s, %s)",
                columns,
            ).fetchone()[0][0]["Plan"]
        result[f"{prefix}median_us"] = round(statistics.median(medians), 1)
        result[f"{prefix}p95_us"] = round(statistics.median(p95s), 1)
        result[f"{prefix}pages_per_match"] = round(
            (plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]) / len(rows), 1
        )
        result[f"{prefix}pages_read_per_match"] = round(plan["Shared Read Blocks"] / len(rows), 2)
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
