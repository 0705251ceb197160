"""Request and response bodies of erasure (api/routes/privacy.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas import PlainText, StrictBody


class ErasureIn(StrictBody):
    user_sub: PlainText = Field(
        min_length=1, max_length=255, description="the person's `sub`, as their app_user tokens carry it"
    )


class ErasureReceipt(BaseModel):
    id: uuid.UUID = Field(description="the erasure's id: quote it to the person; the receipt never holds the sub")
    requested_at: datetime
    completed_at: datetime = Field(description="everything that named the person was erased by then")
