"""The check-in rules an offer can have, and its optional schedule.

Validated here, evaluated in the database inside the check-in transaction
(migrations/sql/functions/rule_met.sql and schedule_allows.sql), so a check-in's rules
cost no extra round trips. Every offer has a rule: no offer is shown without a check-in.

Rule types and their parameters are declared once on each side: here, by the models of
the `Rule` union (`rule_parameters()` reads them off), and in the database by the
rule_types table (migrations/sql/0002/schema.sql), which offers.rule must match.
tests/test_rules_registry.py proves that the two agree; a new rule type or parameter
goes into both, and into rule_met.
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EveryCheckin(Strict):
    type: Literal["every_checkin"]


class FirstCheckin(Strict):
    """The user's first accepted check-in ever at any of the campaign's venues."""

    type: Literal["first_checkin"]


class NthCheckin(Strict):
    """Every n-th accepted check-in at the campaign's venues since the campaign started."""

    type: Literal["nth_checkin"]
    n: int = Field(ge=2, le=1000)


class Loyalty(Strict):
    """The visit that brings the user's visits within the last `within_days` to `visits`."""

    type: Literal["loyalty"]
    visits: int = Field(ge=2, le=1000)
    within_days: int = Field(ge=1, le=365)


class Flash(Strict):
    """The first `first_n` distinct users (each once) while the campaign is active."""

    type: Literal["flash"]
    first_n: int = Field(ge=1, le=1_000_000)


class Group(Strict):
    """Once `min_people` distinct users have checked in at the venue within `within_minutes`
    (either side) of one check-in, each of them unlocks: the one completing the group in the
    check-in response, the others in their wallets, in the same transaction."""

    type: Literal["group"]
    min_people: int = Field(ge=2, le=100)
    within_minutes: int = Field(ge=1, le=1440)


class TopVisitor(Strict):
    """The user with strictly the most distinct local days at the venue in the window
    (Foursquare's "mayor"); a tie crowns nobody new."""

    type: Literal["top_visitor"]
    within_days: int = Field(ge=1, le=365)


Rule = Annotated[
    EveryCheckin | FirstCheckin | NthCheckin | Loyalty | Flash | Group | TopVisitor,
    Field(discriminator="type"),
]


def rule_parameters() -> dict[str, frozenset[str]]:
    """{rule type: its parameter names}, read off the models of the `Rule` union."""
    union, _ = get_args(Rule)
    declared: dict[str, frozenset[str]] = {}
    for model in get_args(union):
        (rule_type,) = get_args(model.model_fields["type"].annotation)
        declared[rule_type] = frozenset(model.model_fields) - {"type"}
    return declared


class TimeWindow(Strict):
    """Local time in the venue's time zone. An end before the start runs past midnight and
    belongs to the weekday it starts on: Friday 22:00-02:00 covers Saturday 01:00."""

    start: time
    end: time

    @field_validator("start", "end")
    @classmethod
    def _local_minutes(cls, value: time) -> time:
        # Stored as HH:MM in the venue's zone: seconds or an offset would be silently dropped.
        if value.second or value.microsecond or value.tzinfo is not None:
            raise ValueError("use HH:MM, local time at the venue")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("a window's start and end must differ")
        return self


class Schedule(Strict):
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default=[1, 2, 3, 4, 5, 6, 7], min_length=1, max_length=7, description="ISO weekdays, Monday = 1"
    )
    windows: list[TimeWindow] = Field(default=[], max_length=12, description="empty = all day")

    @field_validator("weekdays")
    @classmethod
    def _unique(cls, days: list[int]) -> list[int]:
        if len(set(days)) != len(days):
            raise ValueError("weekdays must not repeat")
        return sorted(days)

    def to_json(self) -> dict[str, object]:
        return {
            "weekdays": self.weekdays,
            "windows": [{"start": w.start.strftime("%H:%M"), "end": w.end.strftime("%H:%M")} for w in self.windows],
        }


def budget_for(rule: Rule, total_limit: int) -> int:
    """How many unlocks the offer may make: a flash offer stops at its first N users."""
    return min(total_limit, rule.first_n) if isinstance(rule, Flash) else total_limit


# How many rows a hot counter is split over: an offer's budget, and the stats counters by user.
# The database has the same number: shard_count() (tests/test_sql_functions.py proves they agree).
SHARDS = 8


def budget_shards(budget: int, shards: int = SHARDS) -> list[int]:
    """Split a budget over up to `shards` rows, so concurrent unlocks do not queue on one counter."""
    count = max(1, min(shards, budget))
    return [budget // count + (1 if i < budget % count else 0) for i in range(count)]
