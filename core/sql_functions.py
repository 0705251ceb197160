"""The database's functions and triggers, held against their source files.

Every function has one source file, `migrations/sql/functions/<name>.sql`: the function
(CREATE OR REPLACE) and, for a trigger function, its triggers (CREATE OR REPLACE TRIGGER).
A migration never reads those files: it installs a copy pinned in its own folder
(`migrations/sql/<revision>/functions/`), so a landed revision installs the same text
forever. `new_revision()` writes such a revision for the files that changed.

Drift is measured in PostgreSQL's own normal form: the sources are created in the
session's temporary schema inside a transaction that is rolled back, and
pg_get_functiondef / pg_get_triggerdef of both sides are compared. The probe touches no
real object (triggers go on empty temporary copies of their tables), takes no lock a
check-in waits for, and needs only the TEMP privilege.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg.rows import tuple_row
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SOURCES = MIGRATIONS / "sql" / "functions"

_TRIGGER = re.compile(r"^CREATE OR REPLACE TRIGGER\b", re.MULTILINE)
_TRIGGER_TABLE = re.compile(r"\bON\s+(\w+)\s+FOR EACH", re.IGNORECASE)
# Where each side's definitions live: the real schema, or the probe's temporary one.
_QUALIFIER = re.compile(r"^(CREATE OR REPLACE FUNCTION |CREATE TRIGGER .*? ON )(public|pg_temp)\.", re.MULTILINE)

# Functions (extension members aside) and user triggers of one schema, keyed by a stable name.
FUNCTIONS_SQL = """
    SELECT p.proname || '(' || oidvectortypes(p.proargtypes) || ')', pg_get_functiondef(p.oid)
    FROM pg_proc p
    WHERE p.pronamespace = %(schema)s AND p.prokind = 'f'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""
TRIGGERS_SQL = """
    SELECT 'trigger ' || t.tgname || ' on ' || c.relname, pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = %(schema)s AND NOT t.tgisinternal
"""


def read_sources(folder: Path = SOURCES) -> dict[str, str]:
    """{function name: file text}, one file per function."""
    return {path.stem: path.read_text() for path in sorted(folder.glob("*.sql"))}


def _split(text: str) -> tuple[str, str]:
    """(the function, its triggers): triggers go on after the probe's copies of their tables exist."""
    match = _TRIGGER.search(text)
    return (text, "") if match is None else (text[: match.start()], text[match.start() :])


def normalise(definition: str) -> str:
    """One definition as either side prints it, minus the schema it lives in."""
    return _QUALIFIER.sub(r"\1", definition).strip()


def _rows(conn: psycopg.Connection, query: str, params: dict[str, int] | None = None) -> list[tuple[str, str]]:
    with conn.cursor(row_factory=tuple_row) as cursor:
        return cursor.execute(query, params).fetchall()


def source_definitions(conn: psycopg.Connection, sources: Mapping[str, str]) -> dict[str, str]:
    """The sources in PostgreSQL's normal form: created in pg_temp, read back, rolled back."""
    functions, triggers = zip(*(_split(text) for text in sources.values()), strict=True) if sources else ((), ())
    tables = sorted({table for text in triggers for table in _TRIGGER_TABLE.findall(text)})
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL search_path = pg_temp, public")
        conn.execute("SET LOCAL check_function_bodies = off")  # as pg_dump does: any order
        for text in functions:
            conn.execute(text.encode())  # bytes: a literal % is not a placeholder
        schema = {"schema": _temp_schema(conn)}
        # Read before the look-alike tables exist: they would shadow the real row types' names.
        rows = _rows(conn, FUNCTIONS_SQL, schema)
        for table in tables:  # empty look-alikes: no lock on the real table, no write to it
            conn.execute(f"CREATE TABLE pg_temp.{table} (LIKE public.{table})".encode())
        for text in triggers:
            if text:
                conn.execute(text.encode())
        rows += _rows(conn, TRIGGERS_SQL, schema)
    return {name: normalise(definition) for name, definition in rows}


def _temp_schema(conn: psycopg.Connection) -> int:
    return int(_rows(conn, "SELECT pg_my_temp_schema()::int")[0][0])


def installed_definitions(conn: psycopg.Connection) -> dict[str, str]:
    schema = {"schema": int(_rows(conn, "SELECT 'public'::regnamespace::int")[0][0])}
    rows = _rows(conn, FUNCTIONS_SQL, schema) + _rows(conn, TRIGGERS_SQL, schema)
    return {name: normalise(definition) for name, definition in rows}


@dataclass(frozen=True)
class Drift:
    differs: list[str] = field(default_factory=list)  # installed, with another definition
    missing: list[str] = field(default_factory=list)  # in the sources, not installed
    unexpected: list[str] = field(default_factory=list)  # installed, in no source (an old signature?)

    def __bool__(self) -> bool:
        return bool(self.differs or self.missing or self.unexpected)

    def __str__(self) -> str:
        parts = [f"{what}: {', '.join(names)}" for what, names in vars(self).items() if names]
        return "; ".join(parts) or "none"


def compare(expected: Mapping[str, str], installed: Mapping[str, str]) -> Drift:
    return Drift(
        differs=sorted(name for name in expected.keys() & installed.keys() if expected[name] != installed[name]),
        missing=sorted(expected.keys() - installed.keys()),
        unexpected=sorted(installed.keys() - expected.keys()),
    )


def drift(conn: psycopg.Connection, sources: Mapping[str, str] | None = None) -> Drift:
    """How the database's functions and triggers differ from the source files."""
    return compare(
        source_definitions(conn, read_sources() if sources is None else sources), installed_definitions(conn)
    )


_source_definitions: dict[str, dict[str, str]] = {}


def function_drift(database_url: str) -> Drift:
    """For /readyz: the sources' normal form is computed once per process and database
    (the files do not change under a running process), the installed side every time."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, connect_timeout=2) as conn:
        if database_url not in _source_definitions:
            _source_definitions[database_url] = source_definitions(conn, read_sources())
        return compare(_source_definitions[database_url], installed_definitions(conn))


# --------------------------------------------------------------------------- new revisions

_REVISION_TEMPLATE = '''"""{message}

Revision ID: {revision}
Revises: {down_revision}
Create Date: {date}
"""

from pathlib import Path

from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parent.parent / "sql"
# Function -> the revision whose pinned copy it replaces (None: new). Installed from this
# revision's own copies in migrations/sql/{revision}/functions/, never from the sources.
CHANGED: dict[str, str | None] = {changed!r}
REMOVED: dict[str, str] = {removed!r}


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    # A changed argument list makes a second function: drop the old one here by its full
    # signature, e.g. driver.execute("DROP FUNCTION name(text, integer)"); the drift test names it.
    for name in REMOVED:
        driver.execute(f"DROP FUNCTION {{name}}")
    for name in CHANGED:
        driver.execute((SQL / revision / "functions" / f"{{name}}.sql").read_bytes())


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("SET LOCAL check_function_bodies = off")
    for name, previous in CHANGED.items():
        if previous is None:
            driver.execute(f"DROP FUNCTION {{name}}")
        else:
            driver.execute((SQL / previous / "functions" / f"{{name}}.sql").read_bytes())
    for name, previous in REMOVED.items():
        driver.execute((SQL / previous / "functions" / f"{{name}}.sql").read_bytes())
'''


def revisions(migrations: Path = MIGRATIONS) -> list[str]:
    """Revision ids, oldest first."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    return [script.revision for script in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]


def pinned_sources(migrations: Path = MIGRATIONS) -> dict[str, tuple[str, str]]:
    """{function: (revision, text)}: what the revisions, applied in order, leave installed."""
    pinned: dict[str, tuple[str, str]] = {}
    for revision in revisions(migrations):
        for name, text in read_sources(migrations / "sql" / revision / "functions").items():
            pinned[name] = (revision, text)
        removed = migrations / "sql" / revision / "removed.txt"
        for name in removed.read_text().split() if removed.exists() else []:
            del pinned[name]
    return pinned


def new_revision(message: str, migrations: Path = MIGRATIONS, today: datetime | None = None) -> Path | None:
    """Write a revision that installs the source files changed since head, from copies
    pinned in its own folder; None when nothing changed."""
    head = revisions(migrations)[-1]
    pinned = pinned_sources(migrations)
    sources = read_sources(migrations / "sql" / "functions")
    changed = {
        name: pinned[name][0] if name in pinned else None
        for name, text in sources.items()
        if name not in pinned or pinned[name][1] != text
    }
    removed = {name: revision for name, (revision, _) in pinned.items() if name not in sources}
    if not changed and not removed:
        return None
    revision = f"{int(head) + 1:04d}"
    folder = migrations / "sql" / revision / "functions"
    folder.mkdir(parents=True)
    for name in changed:
        (folder / f"{name}.sql").write_text(sources[name])
    if removed:
        (folder.parent / "removed.txt").write_text("\n".join(sorted(removed)) + "\n")
    today = today or datetime.now(UTC)
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40]
    path = migrations / "versions" / f"{today:%Y%m%d}_{revision}_{slug}.py"
    path.write_text(
        _REVISION_TEMPLATE.format(
            message=message,
            revision=revision,
            down_revision=head,
            date=f"{today:%Y-%m-%d}",
            changed=changed,
            removed=removed,
        )
    )
    return path
