"""What the console needs: offers that can be paused or retired, the till's code look-up and
redemption receipts with the offer's texts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
# Function -> the revision whose pinned copy it replaces (None: new). Installed from this
# revision's own copies in migrations/sql/0003/functions/, never from the sources.
CHANGED: dict[str, str | None] = {
    "redeem": "0002",  # the receipt carries the offer's title and terms
    "accept_in_campaign": "0002",  # a paused or retired offer unlocks nothing
}
REMOVED: dict[str, str] = {}


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    # The till lists a venue's redemptions newest first: this index replaces the plain one on
    # venue_id (it still serves the foreign key), so a redemption writes no extra index entry.
    op.execute("DROP INDEX redemptions_venue_id")
    op.execute("CREATE INDEX redemptions_venue_redeemed ON redemptions (venue_id, redeemed_at DESC, id DESC)")
    # An offer can be paused (and resumed) or retired for good; only an active one unlocks.
    op.execute(
        "ALTER TABLE offers ADD COLUMN status text NOT NULL DEFAULT 'active' "
        "CONSTRAINT offers_status_known CHECK (status IN ('active', 'paused', 'retired'))"
    )
    for name in REMOVED:
        driver.execute(f"DROP FUNCTION {name}")
    for name in CHANGED:
        driver.execute((SQL / revision / "functions" / f"{name}.sql").read_bytes())


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for name, previous in CHANGED.items():
        if previous is None:
            driver.execute(f"DROP FUNCTION {name}")
        else:
            driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    for name, previous in REMOVED.items():
        driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    op.execute("ALTER TABLE offers DROP COLUMN status")
    op.execute("DROP INDEX redemptions_venue_redeemed")
    op.execute("CREATE INDEX redemptions_venue_id ON redemptions (venue_id)")
