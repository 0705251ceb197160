"""The customer's export (GET /v1/me/export, api/routes/me.py): everything held about the caller."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.conversation_schemas import MerchantName, MyConversation, OfferRef
from api.schemas import VenueRef

UnlockState = Literal["active", "redeemed", "expired"]
NEXT_CURSOR = "opaque; pass as ?cursor= to GET /v1/me/export/checkins for the older ones; null when there are none"


class ExportedCheckin(BaseModel):
    id: uuid.UUID
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(description="why it was rejected (as POST /v1/checkins answered); null when accepted")
    detail: dict[str, Any] | None = Field(description="the figures behind a rejection")
    venue: VenueRef | None = Field(description="the venue it was measured against; null when none was near")
    lon: float | None = Field(description="the position the phone sent; null once the retention period has passed")
    lat: float | None = Field(description="null once the retention period has passed")
    accuracy_m: float | None = Field(
        description="the GPS accuracy radius the phone reported; null once the retention period has passed"
    )
    accuracy_bucket: str | None = Field(description="the accuracy coarsely, kept past the retention period")
    distance_to_fence_m: float | None = Field(
        description="metres to the venue's fence, 0 inside (to 10 m after the retention period); null without a venue"
    )
    observed_at: datetime = Field(description="when the phone took the fix")
    received_at: datetime = Field(description="when the server got it")
    device_id: str | None = Field(description="as the app sent it; null if none, or after the retention period")
    mocked: bool | None = Field(description="whether the phone reported a simulated location")


class ExportedCheckins(BaseModel):
    items: list[ExportedCheckin] = Field(description="newest observed_at first")
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class ExportedCheckinsFirstPage(ExportedCheckins):
    total: int = Field(description="every check-in held, of which `items` are the newest")


class ExportedUnlock(BaseModel):
    id: uuid.UUID
    offer: OfferRef
    campaign_id: uuid.UUID
    venue: VenueRef
    merchant: MerchantName
    checkin_id: uuid.UUID = Field(description="the check-in that unlocked it")
    code: str = Field(description="the one-time code")
    state: UnlockState = Field(description="the code's state now: redeemed wins over expired")
    unlocked_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None


class ExportedRedemption(BaseModel):
    id: uuid.UUID
    unlock_id: uuid.UUID
    offer_id: uuid.UUID
    venue_id: uuid.UUID
    redeemed_at: datetime
    voided_at: datetime | None = Field(description="when the merchant undid it (a till mistake), if it did")
    void_reason: str | None


class ExportedFeedback(BaseModel):
    id: uuid.UUID
    unlock_id: uuid.UUID
    offer_id: uuid.UUID
    venue_id: uuid.UUID
    rating: int
    comment: str | None
    created_at: datetime
    updated_at: datetime


class CampaignRef(BaseModel):
    id: uuid.UUID
    name: str


class ExportedExposure(BaseModel):
    campaign: CampaignRef
    merchant: MerchantName
    arm: Literal["treatment", "control"] = Field(
        description="the campaign's randomised group: treatment could unlock its offers, control was held out to "
        "measure what the campaign changes"
    )
    exposed_at: datetime = Field(description="the first accepted check-in at one of the campaign's venues")
    venue_id: uuid.UUID
    checkin_id: uuid.UUID
    return_visits: int = Field(description="later visits to the campaign's venues the measurement counted")
    triggered_at: datetime | None = Field(
        description="the first check-in at which an offer unlocked, or would have in the control group"
    )


class Export(BaseModel):
    subject: str = Field(description="who this is about: the caller's token subject")
    exported_at: datetime
    checkins: ExportedCheckinsFirstPage = Field(
        description="the newest 5,000 check-ins, accepted and rejected; page through older ones with next_cursor"
    )
    unlocks: list[ExportedUnlock] = Field(description="every offer unlocked, newest first, with its code's state")
    redemptions: list[ExportedRedemption] = Field(description="newest first, voided ones included")
    feedback: list[ExportedFeedback] = Field(description="newest first")
    conversations: list[MyConversation] = Field(description="newest first, each with every message")
    campaigns: list[ExportedExposure] = Field(description="every campaign that counted the caller, with the arm")
