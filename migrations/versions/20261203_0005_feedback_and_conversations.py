"""A customer's feedback on a redeemed offer and conversations with the merchant about an unlock.

Three tables (schema.sql here): unlock_feedback (once per unlock, a rating from 1 to 7 and an
optional comment), conversations (one per unlock, its status, the customer's and the merchant's
read marks, and the order the merchant's inbox reads it in) and conversation_messages. Tables and
indexes only: no function or trigger changes, so nothing here has a source file. The downgrade
drops the three tables, which leaves the schema exactly as revision 0004 made it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PINNED = Path(__file__).resolve().parent.parent / "sql" / revision


def upgrade() -> None:
    # Straight to the driver: the file holds many statements.
    op.get_bind().connection.driver_connection.execute((PINNED / "schema.sql").read_bytes())


def downgrade() -> None:
    op.get_bind().connection.driver_connection.execute((PINNED / "schema_downgrade.sql").read_bytes())
