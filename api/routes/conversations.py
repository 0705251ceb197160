"""Feedback and conversations: the customer rates a redeemed offer and writes to the merchant
about an unlock; the merchant's staff read and answer in an inbox (offers/feedback.py,
offers/conversations.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.conversation_schemas import (
    ConversationOut,
    ConversationPage,
    ConversationStatus,
    FeedbackIn,
    FeedbackOut,
    FeedbackPatch,
    MerchantMessageOut,
    MessageIn,
    MessageOut,
    MyConversationPage,
)
from api.deps import AppUser, MerchantReader, Session, SettingsDep, merchant_of, require
from api.problems import error_responses
from core.auth import Principal, Role
from core.errors import ValidationFailed
from core.keyset import DEFAULT_LIMIT, MAX_LIMIT
from geo import venues
from offers import campaigns, conversations, feedback

router = APIRouter(prefix="/v1", tags=["conversations"], responses=error_responses(401, 403, 422, 500))

# Who answers customers: the merchant's admins and staff (marketers read).
Responder = Annotated[Principal, Depends(require(Role.MERCHANT_ADMIN, Role.MERCHANT_STAFF))]
PageSize = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


# --------------------------------------------------------------------------- the customer's side


@router.post(
    "/unlocks/{unlock_id}/feedback", status_code=201, response_model=FeedbackOut, responses=error_responses(404, 409)
)
async def give_feedback(
    unlock_id: uuid.UUID, body: FeedbackIn, principal: AppUser, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    """Rate a redeemed offer from 1 to 7, with an optional comment, once. Another user's unlock is
    404, one not redeemed is 409 `not_redeemed`, a second feedback 409 `feedback_exists`. A comment
    is also your message in the unlock's conversation (`conversation_id`), which the merchant answers."""
    return await feedback.give_feedback(
        session, settings, user=principal.sub, unlock_id=unlock_id, rating=body.rating, comment=body.comment
    )


@router.patch("/unlocks/{unlock_id}/feedback", response_model=FeedbackOut, responses=error_responses(404, 409))
async def change_feedback(
    unlock_id: uuid.UUID, body: FeedbackPatch, principal: AppUser, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    """Change the rating or the comment (the fields sent) within CHECKIN_FEEDBACK_EDIT_MINUTES of
    giving it (`editable_until`), then 409 `feedback_locked`. A comment can be reworded, not removed."""
    nulls = sorted(field for field in body.model_fields_set if getattr(body, field) is None)
    if nulls:
        raise ValidationFailed.for_field(nulls[0], "null_not_allowed", f"{nulls[0]} cannot be null")
    return await feedback.change_feedback(
        session, settings, user=principal.sub, unlock_id=unlock_id, rating=body.rating, comment=body.comment
    )


@router.post(
    "/unlocks/{unlock_id}/messages", status_code=201, response_model=MessageOut, responses=error_responses(404, 429)
)
async def write_to_merchant(
    unlock_id: uuid.UUID, body: MessageIn, principal: AppUser, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    """Write to the merchant about your unlock, redeemed or not (the code did not work, staff
    refused it, a question): opens the unlock's conversation, or joins it and opens it again.
    At most CHECKIN_CONVERSATION_MESSAGES_PER_HOUR messages an hour in one conversation, then 429
    with `Retry-After`."""
    return await conversations.write_as_customer(
        session, settings, user=principal.sub, unlock_id=unlock_id, body=body.body
    )


@router.get("/me/conversations", response_model=MyConversationPage)
async def my_conversations(
    principal: AppUser, session: Session, limit: PageSize = DEFAULT_LIMIT, cursor: Cursor = None
) -> dict[str, Any]:
    """Your conversations, newest first, each with every message (the merchant's replies included)
    and `unread`: the merchant's messages since your read mark. Reading changes nothing: mark a
    conversation read with POST /v1/me/conversations/{id}/read (writing in it does too)."""
    return await conversations.my_conversations(session, user=principal.sub, cursor=cursor, limit=limit)


@router.post("/me/conversations/{conversation_id}/read", status_code=204, responses=error_responses(404))
async def mark_my_conversation_read(conversation_id: uuid.UUID, principal: AppUser, session: Session) -> Response:
    """You have read the merchant's messages of this conversation: its `unread` is 0."""
    await conversations.mark_read_by_customer(session, user=principal.sub, conversation_id=conversation_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------- the merchant's side


@router.get("/conversations", response_model=ConversationPage, responses=error_responses(404))
async def list_conversations(
    principal: MerchantReader,
    session: Session,
    settings: SettingsDep,
    status: Annotated[ConversationStatus | None, Query(description="only this status")] = None,
    venue_id: Annotated[uuid.UUID | None, Query(description="one venue; another merchant's is 404")] = None,
    campaign_id: Annotated[uuid.UUID | None, Query(description="one campaign; another merchant's is 404")] = None,
    rating_max: Annotated[int | None, Query(ge=1, le=7, description="only feedback rated this or lower")] = None,
    limit: PageSize = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The merchant's conversations with customers: open ones first, the customer who has waited
    longest at the top, then answered and closed ones, the latest change first. Customers appear as
    a pseudonym stable for this merchant, never as who they are."""
    merchant = merchant_of(principal)
    if venue_id is not None:
        await venues.get_venue(session, merchant, venue_id)
    if campaign_id is not None:
        await campaigns.get_campaign(session, merchant, campaign_id)
    return await conversations.inbox_page(
        session,
        settings,
        merchant=merchant,
        status=status,
        venue=venue_id,
        campaign=campaign_id,
        rating_max=rating_max,
        cursor=cursor,
        limit=limit,
    )


@router.get("/conversations/{conversation_id}", response_model=ConversationOut, responses=error_responses(404))
async def get_conversation(
    conversation_id: uuid.UUID, principal: MerchantReader, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    """One conversation with every message, oldest first; another merchant's is 404. Reading it
    marks nothing read (POST …/read does)."""
    return await conversations.merchant_conversation(
        session, settings, merchant=merchant_of(principal), conversation_id=conversation_id
    )


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=201,
    response_model=MerchantMessageOut,
    responses=error_responses(404),
)
async def reply_to_customer(
    conversation_id: uuid.UUID, body: MessageIn, principal: Responder, session: Session
) -> dict[str, Any]:
    """Answer the customer: the conversation is then answered (a closed one too) and read."""
    return await conversations.reply(
        session, merchant=merchant_of(principal), staff=principal.sub, conversation_id=conversation_id, body=body.body
    )


@router.post("/conversations/{conversation_id}/close", response_model=ConversationOut, responses=error_responses(404))
async def close_conversation(
    conversation_id: uuid.UUID, principal: Responder, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    """Nothing more to do. The customer can still write, which opens it again."""
    merchant = merchant_of(principal)
    await conversations.close(session, merchant=merchant, conversation_id=conversation_id)
    return await conversations.merchant_conversation(
        session, settings, merchant=merchant, conversation_id=conversation_id
    )


@router.post("/conversations/{conversation_id}/read", status_code=204, responses=error_responses(404))
async def mark_conversation_read(conversation_id: uuid.UUID, principal: Responder, session: Session) -> Response:
    """The merchant's side has read the customer's messages of this conversation: its `unread` is 0."""
    await conversations.mark_read_by_merchant(session, merchant=merchant_of(principal), conversation_id=conversation_id)
    return Response(status_code=204)
