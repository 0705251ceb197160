"""Response bodies of the audit trail (api/routes/audit.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    id: uuid.UUID
    at: datetime = Field(description="when the change was made")
    actor_sub: str = Field(description="who made it: the token subject")
    actor_role: str = Field(description="the role the token gave them then", examples=["merchant_admin"])
    action: str = Field(
        description="`<target_type>.<verb>`, stable: venue.created, campaign.activated, offer.updated, "
        "redemption.voided, webhook.deleted ...",
        examples=["campaign.activated"],
    )
    target_type: str = Field(examples=["campaign"])
    target_id: str | None = Field(description="the changed resource's id")
    before: dict[str, Any] | None = Field(
        description="the resource as the API showed it before the change (its response shape, secrets "
        "redacted); null for a creation"
    )
    after: dict[str, Any] | None = Field(description="the resource after the change; null for a deletion")
    request_id: str | None = Field(description="the X-Request-ID of the request that made it")


class AuditPage(BaseModel):
    items: list[AuditEntry] = Field(description="newest first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")
