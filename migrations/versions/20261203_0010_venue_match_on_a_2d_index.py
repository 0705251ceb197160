"""Venue matching on a 2-D index: the same venue at 1,000,000 venues nearly as fast as at 10,000.

match_venue() found its candidates through the geography GiST index, whose 3-D geocentric boxes
overlap more and more as venues crowd into the same cities: a match read 3 pages (index and table) at
10,000 venues and 30 at 1,000,000. Now each venue keeps a lon/lat box around its fence
(venues.fence_box, a generated column, in schema.sql with why it is conservative) under a 2-D GiST
index; lonlat_box() (new) gives the box holding every point within the fix's radius (every longitude
where that reaches ±180 or a pole); match_venue() takes the candidates whose boxes meet it, on a plain
index scan, and applies the same exact geography tests as before, so it picks the same venue with the
same figures (ties now broken by id). The nearest-venue fallback still walks the geography index by
distance (KNN). bench/results/match-0010.md: 5 pages and 1.3× the time at 1,000,000 venues.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
PINNED = SQL / revision
# Function -> the revision whose pinned copy it replaces (None: new). Installed from this revision's own
# copies in migrations/sql/0010/functions/, never from the sources.
CHANGED: dict[str, str | None] = {
    "lonlat_box": None,
    "match_venue": "0002",  # candidates from venues_fence_box_gist
}


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    driver.execute((PINNED / "schema.sql").read_bytes())
    for name in CHANGED:
        driver.execute((PINNED / "functions" / f"{name}.sql").read_bytes())


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for name, previous in CHANGED.items():
        if previous is not None:
            driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    driver.execute((PINNED / "schema_downgrade.sql").read_bytes())
    for name, previous in CHANGED.items():
        if previous is None:
            driver.execute(f"DROP FUNCTION {name}")
