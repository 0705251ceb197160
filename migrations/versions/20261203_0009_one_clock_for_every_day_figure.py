"""One clock for every by-day figure: the day of the check-in it comes from.

Check-ins and exposures counted on the UTC day of the phone's fix (observed_at); unlocks on the
server's day and redemptions and voids on the redemption's, so a check-in sent late around midnight
showed on one day and its unlock on the next. Now an unlock counts on the day of the check-in that
earned it, kept in unlocks.visit_day (schema.sql here), and its redemptions and voids on that day
too: a day's row reads as "these visits, the unlocks they earned and how many were redeemed".
unlock_offer() takes the day (a new argument list: the old function is dropped), unlock_earned()
passes it, redeem() and void_redemption() count on it. The upgrade recounts the three metrics from
the rows; the downgrade recounts them on the old clock and leaves the schema as revision 0008 made it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
PINNED = SQL / revision
# Function -> the revision whose pinned copy it replaces. Installed from this revision's own copies
# in migrations/sql/0009/functions/, never from the sources.
CHANGED: dict[str, str] = {
    "unlock_offer": "0002",  # takes the visit day, and counts the unlock on it
    "unlock_earned": "0007",  # passes the triggering check-in's day
    "redeem": "0004",  # counts on the unlock's visit day
    "void_redemption": "0002",  # likewise
}
# Argument lists that changed: the old function is dropped on the way up, the new on the way down.
OLD_SIGNATURES = ("unlock_offer(offers, uuid, uuid, text, uuid, smallint)",)
NEW_SIGNATURES = ("unlock_offer(offers, uuid, uuid, text, uuid, date, smallint)",)


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    driver.execute((PINNED / "schema.sql").read_bytes())
    for signature in OLD_SIGNATURES:
        driver.execute(f"DROP FUNCTION {signature}")
    for name in CHANGED:
        driver.execute((PINNED / "functions" / f"{name}.sql").read_bytes())


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for signature in NEW_SIGNATURES:
        driver.execute(f"DROP FUNCTION {signature}")
    for name, previous in CHANGED.items():
        driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    driver.execute((PINNED / "schema_downgrade.sql").read_bytes())
