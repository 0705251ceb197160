"""Request and response bodies of webhook endpoints and their deliveries (api/routes/webhooks.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from api.schemas import StrictBody
from offers.webhooks import EventType
from offers.webhooks.address import MAX_URL_LENGTH


class WebhookIn(StrictBody):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="https:// only; its host must resolve to public addresses when deliveries are sent",
    )
    events: list[EventType] = Field(min_length=1, max_length=7, description="the event types to receive")

    @field_validator("events")
    @classmethod
    def _each_once(cls, value: list[EventType]) -> list[EventType]:
        if len(set(value)) != len(value):
            raise ValueError("name each event type once")
        return value


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[EventType]
    status: Literal["enabled", "disabled"]
    created_at: datetime
    failing_since: datetime | None = Field(description="the first failed attempt since the last success")
    disabled_at: datetime | None
    disabled_reason: str | None = Field(description="why it was disabled: it failed for 3 days, and the last error")


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="`whsec_…`: verifies the `webhook-signature` of every delivery (Standard Webhooks). "
        "Shown in this answer only: store it now"
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]
    next_cursor: None = Field(default=None, description="always null: a merchant has at most 20 endpoints")


class WebhookAttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null when there was no answer")
    error: str | None = Field(description="why it failed: the status, a timeout, a refused address ...")
    duration_ms: int


class WebhookDeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: str = Field(description="the `webhook-id` header: the same on every attempt and redelivery")
    type: EventType
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="the next retry while pending")
    retry_until: datetime = Field(description="retried until then (24 hours after it was made or redelivered)")
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempts: list[WebhookAttemptOut] = Field(description="the latest attempts, newest first (at most 10)")


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")
