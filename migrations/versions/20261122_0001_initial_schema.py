"""Initial schema: merchants, venues, campaigns, offers, check-ins, unlocks, redemptions,
events, stats aggregates, and the check-in / redemption functions.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from pathlib import Path

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"


def upgrade() -> None:
    # Straight to the driver: the files hold many statements and literal % and : characters.
    driver = op.get_bind().connection.driver_connection
    for name in ("0001_schema.sql", "0001_functions.sql"):
        driver.execute((SQL / name).read_text())


def downgrade() -> None:
    op.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
