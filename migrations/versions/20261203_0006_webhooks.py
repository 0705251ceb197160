"""Webhooks: the events table as the outbox, and endpoints, messages, deliveries and attempts.

events gains `tx`, the id of the transaction that wrote each row (a column default: checkin(),
redeem() and void_redemption() are unchanged and make no extra round trip), with a partial index
for the kinds a webhook reports, and two more kinds, feedback_received and message_received,
written by the feedback and conversation code in their own transactions. New tables (schema.sql
here): webhook_endpoints, webhook_messages, webhook_deliveries, webhook_attempts, the outbox's
cursor and the sample-ratio alert state. No function or trigger changes, so nothing here has a
source file. The downgrade leaves the schema exactly as revision 0005 made it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PINNED = Path(__file__).resolve().parent.parent / "sql" / revision


def upgrade() -> None:
    # Straight to the driver: the file holds many statements.
    op.get_bind().connection.driver_connection.execute((PINNED / "schema.sql").read_bytes())


def downgrade() -> None:
    op.get_bind().connection.driver_connection.execute((PINNED / "schema_downgrade.sql").read_bytes())
