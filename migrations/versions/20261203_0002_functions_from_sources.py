"""SQL functions and triggers from one source file each; check-in as named steps.

From here on every function lives in migrations/sql/functions/<name>.sql, and a revision
that changes one installs a copy pinned beside it (migrations/sql/<revision>/functions/),
never today's source: a landed revision installs the same text forever.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
PINNED = SQL / "0002"

# 0001's functions (trigger functions aside), dropped so that signatures may change.
FUNCTIONS_0001 = (
    "new_offer_code()",
    "venue_distance_m(venues, geography)",
    "assignment_bucket(text, text)",
    "schedule_allows(jsonb, timestamptz, text)",
    "utc_day(timestamptz)",
    "bump_counter(uuid, date, uuid, text, smallint, bigint)",
    "window_minutes(unlocks)",
    "count_unredeemed(uuid, integer, smallint, bigint)",
    "unlock_offer(offers, uuid, uuid, text, uuid, smallint)",
    "rule_met(offers, campaigns, text, uuid, text, timestamptz)",
    "unlock_json(offers, unlocks)",
    "checkin(text, text, text, double precision, double precision, double precision, timestamptz, uuid, text,"
    " boolean, text, jsonb, double precision, interval)",
    "redeem(uuid, text, uuid, text, text, text)",
    "void_redemption(uuid, uuid, text, text, interval)",
)
TRIGGER_FUNCTIONS = ("campaigns_freeze_measurement", "events_append_only")


def _driver():  # type: ignore[no-untyped-def]
    # Straight to the driver: the files hold many statements and literal % and : characters.
    return op.get_bind().connection.driver_connection


def upgrade() -> None:
    driver = _driver()
    # As pg_dump does: bodies are checked when called, so files install in any order.
    driver.execute("SET LOCAL check_function_bodies = off")
    for signature in FUNCTIONS_0001:
        driver.execute(f"DROP FUNCTION {signature}")
    driver.execute((PINNED / "schema.sql").read_text())
    for path in sorted((PINNED / "functions").glob("*.sql")):
        driver.execute(path.read_text())


def downgrade() -> None:
    driver = _driver()
    for path in sorted((PINNED / "functions").glob("*.sql")):
        if path.stem not in TRIGGER_FUNCTIONS:  # unchanged since 0001, and their triggers need them
            driver.execute(f"DROP FUNCTION IF EXISTS {path.stem}")
    driver.execute((PINNED / "schema_downgrade.sql").read_text())
    driver.execute((SQL / "0001_functions.sql").read_text())
