"""Request and response bodies of feedback and conversations (api/routes/conversations.py).

Texts are PlainText (storable: no NUL, no lone surrogate), stripped of surrounding whitespace,
1-2,000 characters after that, and free of control characters other than tab and line breaks.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from api.schemas import PlainText, StrictBody
from offers.conversations import BODY_MAX_CHARS

# C0 and C1 control characters and DEL, but tab, line feed and carriage return: a message is
# shown to people, and these only hide or garble text there.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _message_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("blank", "must not be blank")
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_character", "must not contain control characters (tab and new lines are fine)"
        )
    return value


MessageText = Annotated[PlainText, AfterValidator(_message_text), Field(min_length=1, max_length=BODY_MAX_CHARS)]
"""Stripped, then 1-2,000 characters, not blank, no control characters but tab and line breaks."""
Rating = Annotated[int, Field(ge=1, le=7, description="1 (very bad) to 7 (excellent)")]


# The customer's side


class FeedbackIn(StrictBody):
    rating: Rating
    comment: MessageText | None = Field(
        default=None,
        description="optional; also the customer's message in the unlock's conversation, which the merchant answers",
    )


class FeedbackPatch(StrictBody):
    """Only the fields sent change. A comment can be reworded, not removed (the merchant may have
    answered it): null is refused."""

    rating: Rating | None = None
    comment: MessageText | None = None


class FeedbackOut(BaseModel):
    id: uuid.UUID
    unlock_id: uuid.UUID
    rating: int
    comment: str | None
    created_at: datetime
    updated_at: datetime
    editable_until: datetime = Field(description="PATCH changes it until then, later it is 409 feedback_locked")
    conversation_id: uuid.UUID | None = Field(description="the conversation its comment is in; null without a comment")


class MessageIn(StrictBody):
    body: MessageText


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    author: Literal["customer", "merchant"]
    kind: Literal["message", "feedback"] = Field(description="feedback: a feedback's comment, edited along with it")
    body: str
    created_at: datetime
    edited_at: datetime | None = Field(description="when a feedback comment was last changed")


class VenueAt(BaseModel):
    id: uuid.UUID
    name: str
    timezone: str = Field(description="the venue's IANA time zone, for showing times as its clock does")


class OfferRef(BaseModel):
    id: uuid.UUID
    title: str


class MerchantName(BaseModel):
    name: str


class FeedbackRef(BaseModel):
    rating: int
    comment: str | None
    created_at: datetime
    updated_at: datetime


ConversationStatus = Literal["open", "answered", "closed"]
STATUS_DESCRIPTION = (
    "open: the customer wrote last and waits for an answer; answered: the merchant wrote last; "
    "closed: the merchant closed it (a new customer message opens it again)"
)


class _Conversation(BaseModel):
    id: uuid.UUID
    unlock_id: uuid.UUID
    status: ConversationStatus = Field(description=STATUS_DESCRIPTION)
    venue: VenueAt = Field(description="where the offer was unlocked")
    offer: OfferRef
    feedback: FeedbackRef | None = Field(description="the customer's feedback on the unlock, if any")
    created_at: datetime = Field(description="the customer's first message")
    last_message_at: datetime
    closed_at: datetime | None


class MyConversation(_Conversation):
    merchant: MerchantName
    unread: int = Field(description="the merchant's messages after the customer's read mark (POST …/read)")
    messages: list[MessageOut] = Field(description="every message, oldest first, the merchant's replies included")


class MyConversationPage(BaseModel):
    items: list[MyConversation] = Field(description="newest conversation first")
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")


# The merchant's side


class UnlockRef(BaseModel):
    id: uuid.UUID
    code_masked: str = Field(description="****-****- and the code's last 4 characters")
    state: Literal["active", "redeemed", "expired"]
    unlocked_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None


class MerchantMessageOut(MessageOut):
    staff: str | None = Field(description="the staff member (token subject) who replied; null for the customer's")


class LastMessage(BaseModel):
    author: Literal["customer", "merchant"]
    body: str
    created_at: datetime


class ConversationSummary(_Conversation):
    customer: str = Field(
        description="the customer's pseudonym, stable for this merchant (never who they are), e.g. cust-7f3a9c2e1b04"
    )
    campaign_id: uuid.UUID
    unlock: UnlockRef
    waiting_since: datetime | None = Field(description="open: since the customer's oldest unanswered message")
    first_reply_at: datetime | None
    unread: int = Field(description="the customer's messages after the merchant's read mark (POST …/read)")


class ConversationItem(ConversationSummary):
    last_message: LastMessage | None


class ConversationPage(BaseModel):
    items: list[ConversationItem] = Field(
        description="open ones first, the customer waiting longest at the top; then answered and closed ones, "
        "the latest change first"
    )
    next_cursor: str | None = Field(description="opaque; pass as ?cursor= for the next page; null on the last page")


class ConversationOut(ConversationSummary):
    messages: list[MerchantMessageOut] = Field(description="every message, oldest first")
