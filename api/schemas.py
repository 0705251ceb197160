"""Request and response bodies. Requests refuse unknown fields, so nobody can set a
merchant_id, a budget or a status they should not."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)
from pydantic_core import PydanticCustomError

from offers.campaigns import OfferStatus
from offers.rules import Rule, Schedule

TIMEZONES = frozenset(available_timezones())
Text = Field(min_length=1, max_length=200)


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


# What the database and Python can hold. A JSON string may carry a NUL (PostgreSQL text and
# jsonb cannot store it) or a lone UTF-16 surrogate such as "\ud800" (not a character: it cannot
# be encoded as UTF-8, so neither stored nor echoed back). An aware datetime may be valid on its
# own clock yet fall outside years 1-9999 once in UTC (0001-01-01T00:00+14:00), where Python
# cannot convert it and PostgreSQL's answer cannot be read back. Every request field is one of
# the types below, so such input is a 422 naming the field, never a 500.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)  # a year's margin: zone shifts and day sums stay valid
MAX_FREE_FORM_DEPTH = 16


def _text_problem(value: str) -> PydanticCustomError | None:
    if "\x00" in value:
        return PydanticCustomError("nul_character", "must not contain NUL characters")
    if _LONE_SURROGATE.search(value):
        return PydanticCustomError(
            "lone_surrogate", "must be valid Unicode: a lone UTF-16 surrogate (\\ud800-\\udfff) is not a character"
        )
    return None


def _storable_text(value: str) -> str:
    problem = _text_problem(value)
    if problem is not None:
        raise problem
    return value


def _written_instant(value: object) -> object:
    # A number would be taken as seconds (or milliseconds, past 2e10) since 1970: the contract says
    # an ISO 8601 string, and a number is a different, ambiguous value.
    if isinstance(value, int | float):
        raise PydanticCustomError("datetime_type", "must be an ISO 8601 date and time with an offset, as a string")
    return value


def _storable_instant(value: datetime) -> datetime:
    try:
        in_range = EARLIEST <= value.astimezone(UTC) <= LATEST
    except OverflowError:  # its UTC value is before year 1 or after 9999
        in_range = False
    if not in_range:
        raise PydanticCustomError("datetime_out_of_range", "must lie between 0002-01-01 and 9998-12-31 in UTC")
    return value


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    """Every key and string of a free-form object storable, and at most MAX_FREE_FORM_DEPTH deep."""
    pending: list[tuple[object, str, int]] = [(value, "", 1)]
    while pending:
        node, path, depth = pending.pop()
        if depth > MAX_FREE_FORM_DEPTH:
            raise PydanticCustomError(
                "nested_too_deeply", "nested more than {depth} levels deep", {"depth": MAX_FREE_FORM_DEPTH}
            )
        items: list[tuple[str, object]] = []
        if isinstance(node, dict):
            for key, child in node.items():
                if (problem := _text_problem(key)) is not None:
                    where = f"a key of {path}" if path else "a key"
                    raise PydanticCustomError(
                        problem.type, "{where} {message}", {"where": where, "message": problem.message()}
                    )
                items.append((key, child))
        elif isinstance(node, list):
            items = [(str(i), child) for i, child in enumerate(node)]
        elif isinstance(node, str) and (problem := _text_problem(node)) is not None:
            raise PydanticCustomError(problem.type, "{where} {message}", {"where": path, "message": problem.message()})
        pending.extend((child, f"{path}.{name}" if path else name, depth + 1) for name, child in items)
    return value


PlainText = Annotated[str, AfterValidator(_storable_text)]
"""Text the database can store: no NUL, no lone surrogate."""
Instant = Annotated[AwareDatetime, BeforeValidator(_written_instant), AfterValidator(_storable_instant)]
"""An aware datetime whose UTC value Python and PostgreSQL both hold, with a year's margin."""
FreeFormObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]
"""A JSON object checked by a service (a geofence): its keys and strings storable, its depth bounded."""


def _known_timezone(value: str) -> str:
    if value not in TIMEZONES:
        raise ValueError("unknown IANA time zone, e.g. Europe/Oslo")
    return value


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


# Merchants


class MerchantIn(StrictBody):
    name: PlainText = Text


class MerchantOut(BaseModel):
    id: uuid.UUID
    name: str


# Venues


class VenueIn(StrictBody):
    name: PlainText = Text
    timezone: PlainText | None = Field(
        default=None,
        max_length=64,
        examples=["Europe/Oslo"],
        description=(
            "IANA zone; omitted: the zone at the geofence's position. It must keep the same UTC offsets "
            "(now and in six months) as the zone at that position, else 422 timezone_mismatch"
        ),
    )
    address: PlainText | None = Field(default=None, max_length=500)
    geofence: FreeFormObject = Field(
        description=(
            "GeoJSON Polygon or MultiPolygon (WGS84, [lon, lat]) or "
            '{"type": "Circle", "center": [lon, lat], "radius_m": r}'
        ),
        examples=[{"type": "Circle", "center": [10.7522, 59.9139], "radius_m": 40}],
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _known_timezone(value)


class VenuePatch(StrictBody):
    name: PlainText | None = Field(default=None, min_length=1, max_length=200)
    timezone: PlainText | None = Field(default=None, max_length=64)
    address: PlainText | None = Field(default=None, max_length=500)
    geofence: FreeFormObject | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _known_timezone(value)


class VenueOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    timezone: str
    address: str | None
    geofence: dict[str, Any]
    area_m2: float
    created_at: datetime
    updated_at: datetime


class NearbyVenue(BaseModel):
    id: uuid.UUID
    name: str
    distance_m: float = Field(description="metres from the position to the geofence; 0 inside")
    has_checkin_offer: bool = Field(description="an offer waits for a check-in here; its content is never shown")


class NearbyOut(BaseModel):
    items: list[NearbyVenue]


# Campaigns and offers


class CampaignIn(StrictBody):
    name: PlainText = Text
    venue_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)
    starts_at: Instant
    ends_at: Instant
    holdout_percent: int = Field(default=10, ge=0, le=50)
    attribution_days: int = Field(default=14, ge=1, le=90)


class CampaignPatch(StrictBody):
    name: PlainText | None = Field(default=None, min_length=1, max_length=200)
    venue_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=500)
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    holdout_percent: int | None = Field(default=None, ge=0, le=50)
    attribution_days: int | None = Field(default=None, ge=1, le=90)


class OfferIn(StrictBody):
    title: PlainText = Text
    description: PlainText = Field(min_length=1, max_length=2000)
    terms: PlainText = Field(min_length=1, max_length=2000)
    rule: Rule
    schedule: Schedule | None = None
    per_user_limit: int = Field(default=1, ge=1, le=1000)
    total_limit: int = Field(ge=1, le=10_000_000)
    redeem_within_minutes: int = Field(default=60, ge=1, le=60 * 24 * 90)


class OfferPatch(StrictBody):
    """Only the fields sent change; a value equal to the current one is no change. Once the
    campaign has been active, rule, per_user_limit and redeem_within_minutes are frozen (409
    measurement_frozen) and total_limit can only grow (409 budget_cannot_shrink). A retired offer
    stays retired: only its texts can change (409 offer_retired). An ended campaign's offers do
    not change (409 campaign_ended)."""

    title: PlainText | None = Field(default=None, min_length=1, max_length=200)
    description: PlainText | None = Field(default=None, min_length=1, max_length=2000)
    terms: PlainText | None = Field(default=None, min_length=1, max_length=2000)
    rule: Rule | None = None
    schedule: Schedule | None = Field(default=None, description="null: any day, any time")
    per_user_limit: int | None = Field(default=None, ge=1, le=1000)
    total_limit: int | None = Field(default=None, ge=1, le=10_000_000)
    redeem_within_minutes: int | None = Field(default=None, ge=1, le=60 * 24 * 90)
    status: OfferStatus | None = Field(
        default=None, description="active unlocks; paused does not until resumed; retired is for good"
    )


class OfferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    campaign_id: uuid.UUID
    title: str
    description: str
    terms: str
    rule: dict[str, Any]
    schedule: dict[str, Any] | None
    per_user_limit: int
    total_limit: int
    redeem_within_minutes: int
    status: OfferStatus = Field(description="only an active offer unlocks")
    budget: int = Field(description="unlocks the offer may make in all: total_limit, or a flash offer's first_n")
    remaining: int | None = Field(default=None, description="unlocks left in the budget")


class CampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    status: Literal["draft", "active", "paused", "ended"]
    venue_ids: list[uuid.UUID]
    starts_at: datetime
    ends_at: datetime
    holdout_percent: int
    attribution_days: int
    activated_at: datetime | None
    offers: list[OfferOut]


# Check-ins


class CheckinIn(StrictBody):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    accuracy_m: float = Field(ge=0, le=100_000, allow_inf_nan=False, description="GPS accuracy radius, metres")
    observed_at: Instant = Field(description="when the phone took the fix (may be earlier if sent offline)")
    venue_id: uuid.UUID | None = Field(default=None, description="the venue the user chose, if any")
    device_id: PlainText | None = Field(default=None, max_length=200)
    mocked: StrictBool | None = Field(default=None, description="the OS reports a simulated location")


class VenueRef(BaseModel):
    id: uuid.UUID
    name: str


class UnlockedOfferOut(BaseModel):
    unlock_id: uuid.UUID
    offer_id: uuid.UUID
    title: str
    description: str
    terms: str
    code: str = Field(description="one-time code, XXXX-XXXX-XXXX, shown at the till")
    expires_at: datetime


class CheckinOut(BaseModel):
    id: uuid.UUID
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(
        description=(
            "why it was rejected: outside_geofence, venue_mismatch, accuracy_too_low, too_fast, too_frequent, "
            "stale, future_timestamp, mocked_location"
        )
    )
    detail: dict[str, Any] | None = Field(description="the figures behind a rejection")
    venue: VenueRef | None
    unlocked: list[UnlockedOfferOut]


class WalletOffer(BaseModel):
    unlock_id: uuid.UUID
    offer_id: uuid.UUID
    title: str
    description: str
    terms: str
    code: str
    status: Literal["active", "redeemed", "expired"]
    unlocked_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    venue: VenueRef
    feedback_requested: bool = Field(
        description="redeemed and not rated yet: the app may ask for feedback (POST /v1/unlocks/{unlock_id}/feedback)"
    )


class WalletOut(BaseModel):
    items: list[WalletOffer] = Field(description="newest first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")


# Redemptions


class RedemptionIn(StrictBody):
    code: PlainText = Field(min_length=4, max_length=32, examples=["K7QX-M2PD-9RTW"])
    venue_id: uuid.UUID


class RedemptionRef(BaseModel):
    id: uuid.UUID
    unlock_id: uuid.UUID
    offer_id: uuid.UUID
    venue_id: uuid.UUID
    redeemed_at: datetime


class RedemptionOut(RedemptionRef):
    title: str = Field(description="the offer's title: what the till gives")
    terms: str = Field(description="the offer's terms")


class VoidIn(StrictBody):
    reason: PlainText = Field(min_length=1, max_length=500)


class VoidOut(RedemptionRef):
    voided_at: datetime
    void_reason: str


class CodeOut(BaseModel):
    code: str = Field(description="the code as stored, XXXX-XXXX-XXXX, however it was typed")
    offer_id: uuid.UUID
    title: str
    description: str
    terms: str
    state: Literal["active", "redeemed", "expired"] = Field(description="redeemed wins over expired")
    expires_at: datetime
    redeemed_at: datetime | None


CUSTOMER_PSEUDONYM = "the customer's pseudonym, stable for this merchant (never who they are), e.g. cust-7f3a9c2e1b04"


class RedemptionItem(BaseModel):
    id: uuid.UUID
    customer: str = Field(description=CUSTOMER_PSEUDONYM)
    code_masked: str = Field(
        description="****-****- and the code's last 4 characters: enough to match a customer's code, not to redeem it"
    )
    offer_id: uuid.UUID
    title: str = Field(description="the offer's title")
    venue_id: uuid.UUID
    redeemed_at: datetime
    staff: str = Field(description="the staff member (token subject) who redeemed it")
    voided_at: datetime | None
    void_reason: str | None
    void_deadline: datetime = Field(description="until when it can be voided (the void window after redeemed_at)")
    voidable: bool = Field(description="not voided and still inside the void window (POST /v1/redemptions/{id}/void)")


class RedemptionPage(BaseModel):
    items: list[RedemptionItem] = Field(description="newest first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")


# The caller's merchant


class MerchantMe(BaseModel):
    id: uuid.UUID
    name: str | None = Field(description="null until the merchant's first write provisions it")
    role: Literal["merchant_admin", "merchant_staff", "marketer"] = Field(description="the caller's role")


# Check-ins under review


class ReviewedCheckin(BaseModel):
    id: uuid.UUID
    venue_id: uuid.UUID
    customer: str = Field(description=CUSTOMER_PSEUDONYM)
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(description="why it was rejected (as in POST /v1/checkins); null when accepted")
    detail: dict[str, Any] | None = Field(description="the figures behind a rejection, as its response gave them")
    accuracy_m: float | None = Field(
        description="the GPS accuracy radius the phone reported; null once retention has removed the position"
    )
    accuracy_bucket: str | None = Field(
        description="the accuracy coarsely, in metres: 0-10, 10-25, 25-50, 50-100, 100-250 or 250+; kept past retention"
    )
    distance_to_fence_m: float | None = Field(
        description="metres from the reported position to the venue's current fence, 0 inside; never the position. "
        "Once retention has removed the position, the distance to the fence of then, to 10 m (null if unknown)"
    )
    observed_at: datetime = Field(description="when the phone took the fix")
    received_at: datetime = Field(description="when the server got it (later for a fix sent from an offline queue)")


class CheckinReviewPage(BaseModel):
    items: list[ReviewedCheckin] = Field(description="newest observed_at first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")
