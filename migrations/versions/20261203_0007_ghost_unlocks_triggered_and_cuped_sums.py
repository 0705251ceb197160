"""Ghost unlocks, triggered and CUPED sums: effect figures a marketer can act on sooner.

A control user's accepted check-in that meets an offer's schedule and rule, within its per-user
limit and while its budget has units left, records a ghost_unlock event (ghost_unlock(), new):
no code, no unlock, nothing shown, the budget not taken. A user's first unlock, real or ghost,
triggers them (mark_triggered(), new): exposures.triggered_at, and the campaign_triggered sums
(schema.sql here), which count return visits after the triggering check-in within attribution_days
of it (count_return_visits). At exposure, exposure_arm() keeps the user's accepted visits to the
campaign's venues in the 28 days before it (exposures.pre_period_visits, x) and campaign_effect
gains Σx, Σx² and Σx·y for a CUPED-adjusted estimate. unlock_earned() takes the user's arm (a new
argument list: the old function is dropped) and accept_in_campaign() no longer stops at control.

Exposures made before this revision keep x = 0 and no trigger. The downgrade refuses while a
ghost_unlock event exists (events are append-only), and otherwise leaves the schema exactly as
revision 0006 made it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
PINNED = SQL / revision
# Function -> the revision whose pinned copy it replaces (None: new). Installed from this
# revision's own copies in migrations/sql/0007/functions/, never from the sources.
CHANGED: dict[str, str | None] = {
    "accept_in_campaign": "0003",  # control users are judged too, and ghost-unlock
    "count_return_visits": "0002",  # triggered sums and the CUPED cross term
    "exposure_arm": "0002",  # the pre-exposure visits x
    "ghost_unlock": None,
    "mark_triggered": None,
    "unlock_earned": "0002",  # takes the arm: real unlocks for treatment, ghosts for control
}
REMOVED: dict[str, str] = {}
# Argument lists that changed: the old function is dropped on the way up, the new on the way down.
OLD_SIGNATURES = ("unlock_earned(offers, uuid, uuid, text, uuid, timestamptz, smallint)",)
NEW_SIGNATURES = ("unlock_earned(offers, text, uuid, uuid, text, uuid, timestamptz, smallint)",)


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    driver.execute((PINNED / "schema.sql").read_bytes())
    for signature in OLD_SIGNATURES:
        driver.execute(f"DROP FUNCTION {signature}")
    for name in REMOVED:
        driver.execute(f"DROP FUNCTION {name}")
    for name in CHANGED:
        driver.execute((PINNED / "functions" / f"{name}.sql").read_bytes())


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for signature in NEW_SIGNATURES:
        driver.execute(f"DROP FUNCTION {signature}")
    for name, previous in CHANGED.items():
        if previous is None:
            driver.execute(f"DROP FUNCTION {name}")
        else:
            driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    for name, previous in REMOVED.items():
        driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    driver.execute((PINNED / "schema_downgrade.sql").read_bytes())
