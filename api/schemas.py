"""Request and response bodies. Requests refuse unknown fields, so nobody can set a
merchant_id, a budget or a status they should not."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from offers.campaigns import OfferStatus
from offers.rules import Rule, Schedule

TIMEZONES = frozenset(available_timezones())
Text = Field(min_length=1, max_length=200)


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")  # PostgreSQL text cannot store them
    return value


PlainText = Annotated[str, AfterValidator(_no_nul)]


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
    timezone: str | None = Field(
        default=None,
        max_length=64,
        examples=["Europe/Oslo"],
        description=(
            "IANA zone; omitted: the zone at the geofence's position. It must keep the same UTC offsets "
            "(now and in six months) as the zone at that position, else 422 timezone_mismatch"
        ),
    )
    address: PlainText | None = Field(default=None, max_length=500)
    geofence: dict[str, Any] = Field(
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
    timezone: str | None = Field(default=None, max_length=64)
    address: PlainText | None = Field(default=None, max_length=500)
    geofence: dict[str, Any] | None = None

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
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    holdout_percent: int = Field(default=10, ge=0, le=50)
    attribution_days: int = Field(default=14, ge=1, le=90)


class CampaignPatch(StrictBody):
    name: PlainText | None = Field(default=None, min_length=1, max_length=200)
    venue_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=500)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
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
    observed_at: AwareDatetime = Field(description="when the phone took the fix (may be earlier if sent offline)")
    venue_id: uuid.UUID | None = Field(default=None, description="the venue the user chose, if any")
    device_id: PlainText | None = Field(default=None, max_length=200)
    mocked: bool | None = Field(default=None, description="the OS reports a simulated location")


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


class WalletOut(BaseModel):
    items: list[WalletOffer] = Field(description="newest first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")


# Redemptions


class RedemptionIn(StrictBody):
    code: str = Field(min_length=4, max_length=32, examples=["K7QX-M2PD-9RTW"])
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


class RedemptionItem(BaseModel):
    id: uuid.UUID
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
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(description="why it was rejected (as in POST /v1/checkins); null when accepted")
    detail: dict[str, Any] | None = Field(description="the figures behind a rejection, as its response gave them")
    accuracy_m: float = Field(description="the GPS accuracy radius the phone reported")
    distance_to_fence_m: float = Field(
        description="metres from the reported position to the venue's current fence, 0 inside; never the position"
    )
    observed_at: datetime = Field(description="when the phone took the fix")
    received_at: datetime = Field(description="when the server got it (later for a fix sent from an offline queue)")


class CheckinReviewPage(BaseModel):
    items: list[ReviewedCheckin] = Field(description="newest observed_at first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")
