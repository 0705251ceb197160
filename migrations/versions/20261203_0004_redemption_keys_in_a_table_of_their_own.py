"""Redemption keys in a table of their own: a staff member's Idempotency-Keys and an app user's
can no longer meet, whatever their subs spell.

Until now both lived in idempotency_keys, the check-in's scoped by the bare sub and the
redemption's by 'redeem:<merchant>:<staff>', so an app user whose sub was 'redeem:M:till-7' shared
the keys of staff member till-7. Redemption keys move to redemption_keys (merchant and staff member
in columns of their own, schema.sql here), stored receipts included, and redeem() reads and writes
them there. Check-in keys stay where they are, as they are: checkin() is unchanged.

A redemption that commits under the old redeem() while this revision runs may leave its key in
idempotency_keys, where nothing reads it: its retry is told the code was already redeemed (409),
never redeemed twice, and the purge removes the row within the keys' time to live.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
PINNED = SQL / revision
# Function -> the revision whose pinned copy it replaces (None: new). Installed from this
# revision's own copies in migrations/sql/0004/functions/, never from the sources.
CHANGED: dict[str, str | None] = {
    "redeem": "0003",  # its keys in redemption_keys; its advisory lock in the two-number lock space
}
REMOVED: dict[str, str] = {}


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    driver.execute((PINNED / "schema.sql").read_bytes())
    for name in REMOVED:
        driver.execute(f"DROP FUNCTION {name}")
    for name in CHANGED:
        driver.execute((PINNED / "functions" / f"{name}.sql").read_bytes())


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
    driver.execute((PINNED / "schema_downgrade.sql").read_bytes())
