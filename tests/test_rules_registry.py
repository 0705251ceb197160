"""One home for rules. Rule types and their parameter names are declared once on each side: the
models of the `Rule` union in offers/rules.py, and the rule_types table in the database
(migrations/sql/0002/schema.sql), which every offers.rule must match. These tests fail when a
type or a parameter exists on one side only, when the database would store an undeclared rule,
when rule_met evaluates a type that is not declared (or fails to evaluate one that is), or when
the SQL reads a rule parameter by a name that is not declared."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic import TypeAdapter, ValidationError

from offers.rules import Rule, rule_parameters

SOURCES = Path(__file__).resolve().parent.parent / "migrations" / "sql" / "functions"

# One valid rule of each type; a new type needs one here too (see the first test).
EXAMPLES = {
    "every_checkin": {},
    "first_checkin": {},
    "nth_checkin": {"n": 3},
    "loyalty": {"visits": 5, "within_days": 30},
    "flash": {"first_n": 100},
    "group": {"min_people": 3, "within_minutes": 30},
    "top_visitor": {"within_days": 30},
}


def declared_in_database(db: psycopg.Connection) -> dict[str, frozenset[str]]:
    return {row["type"]: frozenset(row["parameters"]) for row in db.execute("SELECT type, parameters FROM rule_types")}


def test_the_database_and_the_models_declare_the_same_types_and_parameters(db):
    assert declared_in_database(db) == rule_parameters()
    assert {t: frozenset(p) for t, p in EXAMPLES.items()} == rule_parameters()


@pytest.fixture
def campaign(db) -> str:
    merchant = db.execute("INSERT INTO merchants (name) VALUES ('Rules') RETURNING id").fetchone()["id"]
    return db.execute(
        "INSERT INTO campaigns (merchant_id, name, starts_at, ends_at, holdout_percent, attribution_days)"
        " VALUES (%s, 'Rules', now(), now() + interval '1 day', 0, 14) RETURNING id",
        (merchant,),
    ).fetchone()["id"]


def insert_offer(db: psycopg.Connection, campaign: str, rule: object) -> str:
    return db.execute(
        "INSERT INTO offers (campaign_id, title, description, terms, rule, per_user_limit, total_limit,"
        " redeem_within_minutes) VALUES (%s, 't', 'd', 't', %s, 1, 1, 60) RETURNING id",
        (campaign, Jsonb(rule)),
    ).fetchone()["id"]


@pytest.mark.parametrize("rule_type", sorted(EXAMPLES))
def test_a_valid_rule_of_each_type_passes_both_sides(db, campaign, rule_type):
    rule = TypeAdapter(Rule).validate_python({"type": rule_type, **EXAMPLES[rule_type]})
    offer = insert_offer(db, campaign, rule.model_dump())
    # ... and rule_met evaluates it, rather than raising as for an unknown type.
    met = db.execute(
        "SELECT rule_met(o, c, 'nobody', NULL, 'UTC', now()) AS met FROM offers o JOIN campaigns c"
        " ON c.id = o.campaign_id WHERE o.id = %s",
        (offer,),
    ).fetchone()["met"]
    assert met in (True, False)


UNDECLARED = [
    ({"type": "any_visit"}, "an unknown type"),
    ({"type": "nth_checkin"}, "a parameter missing"),
    ({"type": "loyalty", "visits": 5}, "one of two parameters missing"),
    ({"type": "nth_checkin", "n": 3, "every": 2}, "an extra parameter"),
    ({"type": "every_checkin", "n": 2}, "a parameter of another type"),
    ({"type": "group", "min_people": 3, "within_days": 30}, "one parameter swapped"),
    ({}, "no type"),
    ({"type": None}, "a null type"),
    ({"type": 5}, "a type that is not a string"),
    (["type"], "not an object"),
]


@pytest.mark.parametrize("rule", [c[0] for c in UNDECLARED], ids=[c[1] for c in UNDECLARED])
def test_neither_side_takes_an_undeclared_rule(db, campaign, rule):
    with pytest.raises(ValidationError):
        TypeAdapter(Rule).validate_python(rule)
    with pytest.raises((psycopg.errors.ForeignKeyViolation, psycopg.errors.CheckViolation)):
        insert_offer(db, campaign, rule)


def test_rule_met_raises_on_a_type_it_does_not_know(db, campaign):
    offer = insert_offer(db, campaign, {"type": "every_checkin"})
    with pytest.raises(psycopg.errors.DataException, match="unknown type mystery"):
        db.execute(
            'SELECT rule_met(jsonb_populate_record(o, \'{"rule": {"type": "mystery"}}\'), c, %s, NULL, \'UTC\', now())'
            " FROM offers o JOIN campaigns c ON c.id = o.campaign_id WHERE o.id = %s",
            (f"user-{uuid.uuid4().hex[:8]}", offer),
        )


def test_rule_met_has_one_branch_per_declared_type():
    source = (SOURCES / "rule_met.sql").read_text()
    assert sorted(re.findall(r"^\s*WHEN '(\w+)' THEN", source, flags=re.MULTILINE)) == sorted(rule_parameters())


def test_the_sql_reads_rule_parameters_by_declared_names_only():
    declared = set().union(*rule_parameters().values()) | {"type"}
    read = {name for path in SOURCES.glob("*.sql") for name in re.findall(r"\brule\s*->>?\s*'(\w+)'", path.read_text())}
    assert read, "no rule parameter read found: has the SQL changed how it reads rules?"
    assert read <= declared, f"the SQL reads undeclared rule parameters: {sorted(read - declared)}"
