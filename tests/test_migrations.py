"""The schema's history: functions equal their source files, a database made by an older
revision upgrades to the same schema as a fresh one and keeps its data, the newest
revision downgrades, and a changed source becomes a new revision that pins its text."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url

from core.migrate import alembic_config, create_database_if_missing, drop_database
from core.sql_functions import (
    MIGRATIONS,
    drift,
    pinned_sources,
    read_sources,
    revisions,
    source_definitions,
)
from tests.conftest import TEST_DATABASE_URL

# The revision on main before functions had source files: databases made by it exist.
BEFORE_SOURCES = "0001"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def scratch() -> Iterator[Callable[[str], str]]:
    """Empty databases of this test's own, dropped afterwards."""
    made: list[str] = []

    def make(suffix: str) -> str:
        url = make_url(TEST_DATABASE_URL)
        url = url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)
        drop_database(url)
        create_database_if_missing(url)
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(_libpq(url), autocommit=True, row_factory=dict_row)


def _schema(url: str) -> str:
    """The whole schema as pg_dump prints it: tables, constraints, indexes, functions, triggers."""
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", _libpq(url)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The dump names its server and client versions and, since 15.x, a random restrict key.
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("--", "\\restrict", "\\unrestrict")))


def _columns(url: str) -> dict[str, list[str]]:
    """{table: its columns} of our tables (not Alembic's, not PostGIS's)."""
    columns: dict[str, list[str]] = {}
    with _connect(url) as conn:
        for row in conn.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
            " AND c.table_name NOT IN ('alembic_version', 'spatial_ref_sys') ORDER BY 1, c.ordinal_position"
        ):
            columns.setdefault(row["table_name"], []).append(row["column_name"])
    return columns


def _data(url: str, columns: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every row of the given tables, in the given columns, as sorted JSON text."""
    with _connect(url) as conn:
        return {
            table: sorted(
                row["r"]
                for row in conn.execute(
                    f"SELECT to_jsonb(t)::text AS r FROM (SELECT {', '.join(names)} FROM {table}) t"
                )
            )
            for table, names in columns.items()
        }


def _fill_as_at_0001(url: str) -> None:
    """A merchant's venue, campaign and offer, check-ins (accepted, rejected, an unlock) and a
    redemption, all through the functions of revision 0001."""
    with _connect(url) as conn:
        conn.execute("""
            WITH m AS (INSERT INTO merchants (name) VALUES ('Kaffebrenneriet') RETURNING id),
            v AS (
                INSERT INTO venues (id, merchant_id, name, timezone, geofence, fence, circle_center,
                                    circle_radius_m, area_m2)
                SELECT '00000000-0000-0000-0000-00000000000a', m.id, 'Grünerløkka', 'Europe/Oslo',
                       '{"type": "circle"}',
                       ST_Multi(ST_Buffer('POINT(10.75 59.91)'::geography, 60)::geometry)::geography,
                       'POINT(10.75 59.91)'::geography, 50, 7854
                FROM m RETURNING id, merchant_id),
            c AS (
                INSERT INTO campaigns (id, merchant_id, name, status, starts_at, ends_at, holdout_percent,
                                       attribution_days, activated_at)
                SELECT '00000000-0000-0000-0000-00000000000c', merchant_id, 'Winter', 'active',
                       now() - interval '1 day', now() + interval '30 days', 0, 14, now()
                FROM v RETURNING id),
            cv AS (INSERT INTO campaign_venues SELECT c.id, v.id FROM c, v),
            o AS (
                INSERT INTO offers (id, campaign_id, title, description, terms, rule, per_user_limit,
                                    total_limit, redeem_within_minutes)
                SELECT '00000000-0000-0000-0000-00000000000f', c.id, 'Free coffee', 'A cup', 'One per visit',
                       '{"type": "every_checkin"}', 5, 100, 60
                FROM c RETURNING id)
            INSERT INTO offer_budget_shards SELECT o.id, s, 100 / 8 + (s < 100 % 8)::int FROM o, generate_series(0, 7) s
        """)
        for user, (lon, lat), minutes_ago in (
            ("ada", (10.75, 59.91), 5),
            ("bo", (10.75, 59.91), 3),
            ("ada", (11.5, 59.0), 1),
        ):
            conn.execute(
                "SELECT checkin(%s, %s, 'hash', %s, %s, 10, now() - make_interval(mins => %s), NULL, NULL, false,"
                " NULL, NULL, 250, interval '15 minutes')",
                (user, f"key-{user}-{minutes_ago}", lon, lat, minutes_ago),
            )
        _redeem_code_of(conn, "ada")


def _redeem_code_of(conn: psycopg.Connection, user: str) -> None:
    """Redeem the user's unlocked code at the till (redeem() keeps its signature in every revision)."""
    code = conn.execute("SELECT code FROM unlocks WHERE user_id = %s", (user,)).fetchone()["code"]
    outcome = conn.execute(
        "SELECT redeem(m.id, %s, '00000000-0000-0000-0000-00000000000a', 'staff-1', NULL, NULL) AS r FROM merchants m",
        (code,),
    ).fetchone()["r"]
    assert outcome["outcome"] == "done", outcome


def test_a_database_migrated_to_head_has_exactly_the_source_definitions(db):
    found = drift(db)
    assert not found, f"the database's functions differ from migrations/sql/functions: {found}"


def test_every_source_file_is_one_function_named_like_the_file(db):
    for name, text in read_sources().items():
        definitions = source_definitions(db, {name: text})
        functions = [key for key in definitions if not key.startswith("trigger ")]
        assert [key.split("(")[0] for key in functions] == [name], f"{name}.sql defines {functions}"


def test_the_head_revision_pins_every_source_file():
    """A changed source needs a revision that pins it: `make migration m="why"` writes one."""
    pinned = {name: text for name, (_, text) in pinned_sources().items()}
    changed = sorted(name for name, text in read_sources().items() if pinned.get(name) != text)
    assert not changed, f"sources changed without a revision: {changed}; run make migration m='...'"
    assert sorted(pinned) == sorted(read_sources()), "a pinned function has no source file"


def test_a_database_made_before_source_files_upgrades_to_the_fresh_schema_and_keeps_its_data(scratch):
    old, fresh = scratch("from_0001"), scratch("fresh")
    command.upgrade(alembic_config(old), BEFORE_SOURCES)
    _fill_as_at_0001(old)
    columns = _columns(old)  # the upgrade may add tables and columns: those held before stay as they were
    before = _data(old, columns)
    assert len(before["unlocks"]) == 2 and len(before["redemptions"]) == 1

    command.upgrade(alembic_config(old), "head")
    command.upgrade(alembic_config(fresh), "head")

    assert _data(old, columns) == before
    assert _schema(old) == _schema(fresh)
    with _connect(old) as conn:
        assert not drift(conn)
        _redeem_code_of(conn, "bo")  # codes unlocked before the upgrade still redeem after it


def test_the_newest_revision_downgrades_to_the_schema_before_it_and_back(scratch):
    previous = revisions()[-2]
    upgraded, reference = scratch("down"), scratch("previous")
    command.upgrade(alembic_config(upgraded), BEFORE_SOURCES)
    _fill_as_at_0001(upgraded)
    command.upgrade(alembic_config(upgraded), previous)
    columns = _columns(upgraded)
    data = _data(upgraded, columns)
    command.upgrade(alembic_config(upgraded), "head")
    command.downgrade(alembic_config(upgraded), "-1")
    command.upgrade(alembic_config(reference), previous)

    assert _schema(upgraded) == _schema(reference)
    assert _columns(upgraded) == columns and _data(upgraded, columns) == data
    command.upgrade(alembic_config(upgraded), "head")
    with _connect(upgraded) as conn:
        assert not drift(conn)


def test_a_changed_source_becomes_a_revision_that_pins_it(tmp_path: Path, scratch):
    """The three steps of README "Changing the database", on a copy of migrations/."""
    from core.sql_functions import new_revision

    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config(str(MIGRATIONS.parent / "alembic.ini"))
    config.set_main_option("script_location", str(copy))
    url = scratch("new_revision")
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    original = read_sources(copy / "sql" / "functions")

    assert new_revision("nothing changed", copy) is None
    source = copy / "sql" / "functions" / "utc_day.sql"
    source.write_text(source.read_text().replace("AT TIME ZONE 'UTC'", "AT TIME ZONE 'Etc/UTC'"))
    (copy / "sql" / "functions" / "is_weekend.sql").write_text(
        "CREATE OR REPLACE FUNCTION is_weekend(d date) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$\n"
        "    SELECT extract(isodow FROM d) > 5\n$$;\n"
    )
    path = new_revision("utc_day by zone name; is_weekend", copy)
    assert path is not None and path.parent == copy / "versions"
    head = revisions(copy)[-1]
    assert sorted(p.name for p in (copy / "sql" / head / "functions").iterdir()) == ["is_weekend.sql", "utc_day.sql"]

    command.upgrade(config, "head")
    with _connect(url) as conn:
        assert not drift(conn, read_sources(copy / "sql" / "functions"))
        assert conn.execute("SELECT is_weekend('2026-12-05') AS w").fetchone()["w"] is True
    # A source edited after its revision was written is not what the database has: drift names it.
    source.write_text(source.read_text().replace("Etc/UTC", "UTC"))
    with _connect(url) as conn:
        assert drift(conn, read_sources(copy / "sql" / "functions")).differs == ["utc_day(timestamp with time zone)"]

    command.downgrade(config, "-1")
    with _connect(url) as conn:
        assert not drift(conn, original)


def _checkin(conn: psycopg.Connection, user: str, key: str) -> dict:
    return conn.execute(
        "SELECT checkin(%s, %s, 'hash', 10.75, 59.91, 10, now(), NULL, NULL, false, NULL, NULL, 250,"
        " interval '0 minutes') AS r",
        (user, key),
    ).fetchone()["r"]


def _redeem(conn: psycopg.Connection, staff: str, code: str, key: str) -> dict:
    return conn.execute(
        "SELECT redeem(m.id, %s, '00000000-0000-0000-0000-00000000000a', %s, %s, 'till-hash') AS r FROM merchants m",
        (code, staff, key),
    ).fetchone()["r"]


def test_keys_stored_before_0004_answer_their_retries_after_it_and_after_a_downgrade(scratch):
    """0004 moved the tills' keys out of idempotency_keys, where an app user whose sub spelled a till's
    scope shared them: stored answers survive the move both ways, and back at 0003 a key both used
    stays the app user's (without its row a check-in retried would check in again, a redemption
    retried is only told the code was redeemed)."""
    url = scratch("keys_0004")
    command.upgrade(alembic_config(url), "0003")
    _fill_as_at_0001(url)
    with _connect(url) as conn:
        merchant = conn.execute("SELECT id FROM merchants").fetchone()["id"]
        lookalike = f"redeem:{merchant}:staff-1"
        bo_code = conn.execute("SELECT code FROM unlocks WHERE user_id = 'bo'").fetchone()["code"]
        stored = {
            "till": _redeem(conn, "staff-1", bo_code, "till-key"),
            "app": _checkin(conn, lookalike, "app-key"),
        }
        ada = conn.execute("SELECT key, response FROM idempotency_keys WHERE scope = 'ada' LIMIT 1").fetchone()
        assert stored["till"]["outcome"] == stored["app"]["outcome"] == "done"

    command.upgrade(alembic_config(url), "0004")
    with _connect(url) as conn:
        assert _redeem(conn, "staff-1", bo_code, "till-key") == stored["till"] | {"outcome": "replay"}
        assert _checkin(conn, lookalike, "app-key") == stored["app"] | {"outcome": "replay"}
        assert _checkin(conn, "ada", ada["key"]) == {"outcome": "replay", "response": ada["response"]}
        # Now each may use the other's key.
        app_code = stored["app"]["response"]["unlocked"][0]["code"]
        assert _redeem(conn, "staff-1", app_code, "app-key")["outcome"] == "done"
        assert _checkin(conn, lookalike, "till-key")["outcome"] == "done"

    command.downgrade(alembic_config(url), "0003")
    with _connect(url) as conn:
        rows = conn.execute("SELECT key, response FROM idempotency_keys WHERE scope = %s", (lookalike,)).fetchall()
        assert sorted(row["key"] for row in rows) == ["app-key", "till-key"]
        assert all("unlock_id" not in row["response"] for row in rows)  # the app user's check-ins
        assert _checkin(conn, lookalike, "app-key") == stored["app"] | {"outcome": "replay"}
