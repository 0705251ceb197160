"""Privacy: location retention, erasure, export and an audit trail of merchant-side changes.

- schema_audit.sql: the audit_log table (offers/audit.py), append-only by audit_append_only()
  (new). Its downgrade drops the table and the trail with it.
- schema_erasure.sql: privacy_erasures, the receipts of erasures (offers/privacy/erasure.py),
  holding the person only as a keyed hash of their sub. Its downgrade drops the receipts; the
  erased rows stay erased.
- schema_retention.sql: check-ins may lose their position (lon, lat, accuracy_m become nullable,
  all three or none), keeping accuracy_bucket and distance_to_fence_m instead, and a partial index
  of the rows still holding one for the purge (offers/privacy/retention.py). Catalog changes only,
  plus that index (build it CONCURRENTLY beforehand on a large table: see the file). Its
  downgrade refuses while a check-in has lost its position, since 0007 cannot hold one.
- Functions: accuracy_bucket() (new), and events_append_only() changed so that erasure may rename
  an event's user_id to an `erased:` placeholder and change nothing else; the downgrade
  reinstalls 0002's, which refuses every update again.

The schema comes in parts, one file per concern (schema_<part>.sql, applied in name order, each
undone by its schema_<part>_downgrade.sql in reverse order); functions changed here are pinned in
migrations/sql/0008/functions/ like every revision's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
PINNED = SQL / revision
# Function -> the revision whose pinned copy it replaces (None: new).
CHANGED: dict[str, str | None] = {
    "audit_append_only": None,
    "accuracy_bucket": None,
    "events_append_only": "0002",
}


def _parts() -> list[Path]:
    return sorted(p for p in PINNED.glob("schema_*.sql") if not p.stem.endswith("_downgrade"))


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for part in _parts():
        driver.execute(part.read_bytes())
    for name in CHANGED:
        driver.execute((PINNED / "functions" / f"{name}.sql").read_bytes())


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for name, previous in CHANGED.items():
        if previous is not None:
            driver.execute((SQL / previous / "functions" / f"{name}.sql").read_bytes())
    for part in reversed(_parts()):
        driver.execute(part.with_name(f"{part.stem}_downgrade.sql").read_bytes())
    # New functions last: a trigger function (audit_append_only) cannot go while its table's trigger is there.
    for name, previous in CHANGED.items():
        if previous is None:
            driver.execute(f"DROP FUNCTION {name}")
