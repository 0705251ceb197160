"""Fewer statements per check-in: a refusal's writes in one statement, an exposure's and an unlock's in one each.

checkin() wrote a refused check-in in 2 + 3 per running campaign statements (the check-in, an event and a
counter per campaign, or one event without a campaign, and the stored answer): now one statement with
data-modifying CTEs. The same for the accepted path's writes: the check-in's event and counter in each
campaign (accept_in_campaign), an exposure with its event, counter and effect sums (exposure_arm), an
unlock with its event and two counters (unlock_offer), and the trigger with its sums (mark_triggered).
running_campaigns() (new, inlined) names the campaigns running at a venue, in the id order that keeps
concurrent check-ins taking their counter rows and rule locks in one order; record_checkin() is gone,
its insert now part of each path. Same rows, same order, same answers; bench/results/checkin-db-0011.md.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
# Function -> the revision whose pinned copy it replaces (None: new). Installed from this
# revision's own copies in migrations/sql/0011/functions/, never from the sources.
CHANGED: dict[str, str | None] = {
    "accept_in_campaign": "0007",
    "checkin": "0002",
    "exposure_arm": "0007",
    "mark_triggered": "0007",
    "running_campaigns": None,
    "unlock_offer": "0009",
}
REMOVED: dict[str, str] = {"record_checkin": "0002"}


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    # A changed argument list makes a second function: drop the old one here by its full
    # signature, e.g. driver.execute("DROP FUNCTION name(text, integer)"); the drift test names it.
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
