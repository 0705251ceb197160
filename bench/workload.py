"""What the load sends, made fresh for every run: signing keys and tokens, the wrk data files, and
codes unlocked ahead of the redemption runs.

The service runs as in production, verifying RS256 tokens with a public key only (an identity
provider would hold the private key; here the bench does, for this run only). The HTTP load's users
are drawn among the even-numbered of the 1,000,000 seeded ones that have no accepted check-in in the
last 24 hours (pgbench checks in odd-numbered ones), so a run starts with users who have a history
but did not check in somewhere else minutes ago.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.progress import Progress

from bench.runners import BENCH_DIR, DATA_DIR
from bench.seed import Plan
from core.settings import Settings
from offers.checkin import CHECKIN_SQL

TOKEN_TTL_S = 3 * 3600
STAFF_PER_MERCHANT = 10
NEARBY_ROWS = 5_000


def setting_default(name: str):
    """What the service will use: it runs without any other CHECKIN_ variable set."""
    return Settings.model_fields[name].default


@dataclass
class Signer:
    private_key: rsa.RSAPrivateKey
    public_pem: str

    @classmethod
    def new(cls) -> Signer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        return cls(key, pem)

    def token(self, sub: str, role: str, merchant_id: str | None = None) -> str:
        now = int(time.time())
        claims = {
            "sub": sub,
            "role": role,
            "iat": now,
            "exp": now + TOKEN_TTL_S,
            "aud": setting_default("jwt_audience"),
            "iss": setting_default("jwt_issuer"),
        }
        if merchant_id:
            claims["merchant_id"] = merchant_id
        return jwt.encode(claims, self.private_key, algorithm="RS256")


def write_tsv(path: Path, rows: list[tuple]) -> Path:
    path.write_text("".join("\t".join(str(v) for v in row) + "\n" for row in rows))
    return path


# Even-numbered users, those without a recent accepted check-in first (in random order), then the
# least recently active.
FRESH_USERS_SQL = """
    SELECT u FROM generate_series(0, %(users)s - 1, 2) u
    LEFT JOIN (SELECT user_id, max(observed_at) AS last FROM checkins
               WHERE status = 'accepted' AND observed_at > now() - interval '1 day' GROUP BY user_id) recent
           ON recent.user_id = 'bench-user-' || u
    ORDER BY recent.last NULLS FIRST, random()
    LIMIT %(count)s
"""


def fresh_users(conn: psycopg.Connection, users: int, count: int) -> list[int]:
    return [row[0] for row in conn.execute(FRESH_USERS_SQL, {"users": users, "count": count})]


def checkin_data(conn: psycopg.Connection, signer: Signer, users: int, progress: Progress) -> tuple[Path, Path, dict]:
    """checkins.tsv (token, lat, lon, accuracy) in bench_points order, and nearby.tsv (token, lat, lon).
    Every row has its own user, except that a teleport row goes to the user of the row before,
    when that row was an ordinary check-in somewhere else a moment earlier."""
    points = conn.execute("SELECT kind, lat, lon, accuracy_m FROM bench_points ORDER BY id").fetchall()
    drawn = fresh_users(conn, users, len(points))
    subs: list[str] = []
    for i, (kind, *_rest) in enumerate(points):
        pair = kind == "teleport" and i > 0 and points[i - 1][0] == "inside"
        subs.append(subs[-1] if pair else f"bench-user-{drawn[i]}")
    distinct = list(dict.fromkeys(subs))
    task = progress.add_task(f"RS256 tokens for {len(distinct):,} users", total=len(distinct))
    tokens = {}
    for i, sub in enumerate(distinct):
        tokens[sub] = signer.token(sub, "app_user")
        if i % 1000 == 0:
            progress.update(task, completed=i)
    progress.update(task, completed=len(distinct))
    rows = [(tokens[sub], lat, lon, accuracy) for sub, (_, lat, lon, accuracy) in zip(subs, points, strict=True)]
    inside = [
        (tokens[sub], lat, lon) for sub, (kind, lat, lon, _) in zip(subs, points, strict=True) if kind == "inside"
    ][:NEARBY_ROWS]
    mix = {kind: sum(1 for p in points if p[0] == kind) for kind in sorted({p[0] for p in points})}
    return (
        write_tsv(DATA_DIR / "checkins.tsv", rows),
        write_tsv(DATA_DIR / "nearby.tsv", inside),
        {"rows": len(rows), "users": len(distinct), "points_by_kind": mix},
    )


# Codes unlocked ahead, straight in SQL: a check-in row and an unlock row each, at venues of active
# campaigns (not the stats campaign), for users of their own (a check-in "now" by one of the load's
# users would make that user's next check-in elsewhere too fast). No budget or events: the
# redemption path never reads them.
UNLOCK_SQL = (
    """
    CREATE TEMP TABLE bench_targets AS
    SELECT row_number() OVER (ORDER BY random()) AS k, o.id AS offer_id, c.id AS campaign_id, c.merchant_id,
           cv.venue_id, ST_X(coalesce(v.circle_center::geometry, ST_PointOnSurface(v.fence::geometry))) AS lon,
           ST_Y(coalesce(v.circle_center::geometry, ST_PointOnSurface(v.fence::geometry))) AS lat
    FROM campaigns c
    JOIN campaign_venues cv ON cv.campaign_id = c.id
    JOIN venues v ON v.id = cv.venue_id
    JOIN offers o ON o.campaign_id = c.id
    WHERE c.status = 'active' AND c.id <> %(stats_campaign)s
    """,
    """
    CREATE TEMP TABLE bench_codes AS
    SELECT g, gen_random_uuid() AS checkin_id, t.offer_id, t.campaign_id, t.merchant_id, t.venue_id, t.lon, t.lat,
           'bench-code-user-' || g AS user_id, new_offer_code() AS code
    FROM generate_series(1, %(codes)s) g
    JOIN bench_targets t ON t.k = 1 + mod(g, (SELECT count(*) FROM bench_targets))
    """,
    """
    INSERT INTO checkins (id, user_id, venue_id, status, lon, lat, accuracy_m, observed_at)
    SELECT checkin_id, user_id, venue_id, 'accepted', lon, lat, 10, now() FROM bench_codes
    """,
    """
    INSERT INTO unlocks (offer_id, campaign_id, merchant_id, venue_id, user_id, checkin_id, code, expires_at)
    SELECT offer_id, campaign_id, merchant_id, venue_id, user_id, checkin_id, code, now() + interval '1 day'
    FROM bench_codes
    """,
)


def redemption_data(
    conn: psycopg.Connection, signer: Signer, *, codes: int, hot_clients: int, stats_campaign: str
) -> tuple[Path, Path, dict]:
    """redeem.tsv (staff token, code, venue) for every code but one, and hot.tsv: that one code
    `hot_clients` times, each row with another staff member of its merchant."""
    for statement in UNLOCK_SQL:
        conn.execute(statement, {"codes": codes + 1, "stats_campaign": stats_campaign})
    rows = conn.execute("SELECT merchant_id::text, code, venue_id::text FROM bench_codes ORDER BY g").fetchall()
    conn.execute("DROP TABLE bench_targets, bench_codes")
    staff: dict[str, list[str]] = {}
    for merchant, _, _ in rows:
        if merchant not in staff:
            staff[merchant] = [
                signer.token(f"staff-{merchant[:8]}-{i}", "merchant_staff", merchant)
                for i in range(max(STAFF_PER_MERCHANT, hot_clients))
            ]
    (hot_merchant, hot_code, hot_venue), rest = rows[0], rows[1:]
    redeem = [(staff[m][i % STAFF_PER_MERCHANT], code, venue) for i, (m, code, venue) in enumerate(rest)]
    hot = [(staff[hot_merchant][i], hot_code, hot_venue) for i in range(hot_clients)]
    return (
        write_tsv(DATA_DIR / "redeem.tsv", redeem),
        write_tsv(DATA_DIR / "hot.tsv", hot),
        {"codes": len(redeem), "hot_code_clients": hot_clients, "merchants": len(staff)},
    )


# What pgbench binds for each parameter of CHECKIN_SQL; b is the bench_points row, :u the user.
PGBENCH_VALUES = {
    "user": "'bench-user-' || :u",
    "key": "'pgbench-' || gen_random_uuid()",
    "fingerprint": "'pgbench'",
    "lon": "b.lon",
    "lat": "b.lat",
    "accuracy_m": "b.accuracy_m",
    "observed_at": "now()",
    "venue_id": "NULL::uuid",
    "device_id": "NULL::text",
    "mocked": "NULL::boolean",
    # as geo.plausibility.check_fix does before the call: a fix less accurate than allowed arrives rejected
    "reason": "CASE WHEN b.accuracy_m > :max_accuracy_m THEN 'accuracy_too_low' END",
    "detail": "CASE WHEN b.accuracy_m > :max_accuracy_m THEN json_build_object('accuracy_m', b.accuracy_m, "
    "'max_accuracy_m', :max_accuracy_m::float8)::text END",
    "max_speed_kmh": ":max_speed_kmh::float8",
    "cooldown_s": ":cooldown_s::float8",
    "match_accuracy_cap_m": ":match_accuracy_cap_m::float8",
    "nearest_venue_radius_m": ":nearest_venue_radius_m::float8",
}


def pgbench_variables(plan: Plan) -> dict[str, object]:
    """What bench/checkin.sql takes with -D: the seeded points and users, the limits the service runs with."""
    return {
        "points": plan.points,
        "users": plan.users,
        "max_accuracy_m": setting_default("max_accuracy_m"),
        "max_speed_kmh": setting_default("max_speed_kmh"),
        "cooldown_s": setting_default("checkin_cooldown_s"),
        "match_accuracy_cap_m": setting_default("match_accuracy_cap_m"),
        "nearest_venue_radius_m": setting_default("nearest_venue_radius_m"),
    }


# A user of their own for every call (new_users): the small data set's few thousand users would come back
# within seconds from another city and nearly every call would be refused as too fast; users without a
# history follow the mix bench_points was drawn with, as the HTTP load's users do.
NEW_USER = "'bench-new-' || gen_random_uuid()"


def pgbench_script(
    call: str = CHECKIN_SQL.text,
    *,
    origin: str = "offers/checkin.py: CHECKIN_SQL",
    schema: str = "",
    new_users: bool = False,
) -> Path:
    """bench/checkin.sql with a check-in statement filled in (see the comment there): the API's own
    CHECKIN_SQL unless told otherwise; with a schema, the checkin() of that schema, called by name."""
    if call.count("FROM checkin(") != 1:
        raise RuntimeError(f"{origin}: no single FROM checkin(...) any more; update bench/workload.py: pgbench_script")
    unknown = sorted(set(re.findall(r"(?<![:\w]):(\w+)", call)) - PGBENCH_VALUES.keys())
    if unknown:
        raise RuntimeError(
            f"{origin} has parameters pgbench has no value for: {', '.join(unknown)}; "
            "give them values in bench/workload.py: PGBENCH_VALUES"
        )
    values = PGBENCH_VALUES | ({"user": NEW_USER} if new_users else {})
    statement = re.sub(r"(?<![:\w]):(\w+)", lambda m: f"({values[m.group(1)]})", call)
    function = f"{schema}.checkin(" if schema else "checkin("
    statement = statement.replace("FROM checkin(", f"FROM bench_points b, {function}").rstrip() + "\nWHERE b.id = :p;"
    script = DATA_DIR / f"checkin{'-' + schema if schema else ''}.pgbench.sql"
    script.write_text((BENCH_DIR / "checkin.sql").read_text().replace("{checkin_sql}", statement.strip()) + "\n")
    return script


def stats_token(signer: Signer, merchant_id: str) -> str:
    return signer.token(f"marketer-{uuid.uuid4().hex[:8]}", "marketer", merchant_id)
