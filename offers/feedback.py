"""A customer's feedback on an offer they redeemed: a rating from 1 to 7 and an optional comment.

Only the unlock's owner gives it (another user's unlock is 404), only once the unlock has been
redeemed (409 `not_redeemed`), and once (409 `feedback_exists`, held by a unique constraint
under concurrency). It can be changed for CHECKIN_FEEDBACK_EDIT_MINUTES after it was given, then
it is locked (409 `feedback_locked`).

A comment is also the customer's message in the unlock's conversation (offers/conversations.py),
which it opens or joins, so the merchant can answer it; changing the comment changes that message,
marked edited. A comment can be reworded but not withdrawn: the merchant may have answered it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.settings import Settings
from offers import conversations
from offers.webhooks.outbox import record_customer_event

_RETURNING = """
    RETURNING id, unlock_id, rating, comment, message_id, created_at, updated_at,
              created_at + make_interval(mins => :edit_minutes) AS editable_until
"""
GIVE_SQL = text(f"""
    INSERT INTO unlock_feedback (unlock_id, campaign_id, offer_id, venue_id, user_id, rating, comment, message_id)
    SELECT u.id, u.campaign_id, u.offer_id, u.venue_id, u.user_id, :rating, :comment, :message
    FROM unlocks u WHERE u.id = :unlock
    ON CONFLICT (unlock_id) DO NOTHING
    {_RETURNING}
""")
# The row locked: a second PATCH at the same time waits, then sees this one's change.
LOCK_SQL = text("""
    SELECT id, rating, comment, message_id, now() <= created_at + make_interval(mins => :edit_minutes) AS editable,
           created_at + make_interval(mins => :edit_minutes) AS editable_until
    FROM unlock_feedback WHERE unlock_id = :unlock
    FOR UPDATE
""")
CHANGE_SQL = text(f"""
    UPDATE unlock_feedback
    SET rating = :rating, comment = :comment, message_id = :message, updated_at = now()
    WHERE id = :feedback
    {_RETURNING}
""")
CONVERSATION_OF_UNLOCK_SQL = text("SELECT id FROM conversations WHERE unlock_id = :unlock")


def _out(row: Mapping[str, Any], conversation_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "unlock_id": row["unlock_id"],
        "rating": row["rating"],
        "comment": row["comment"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "editable_until": row["editable_until"],
        "conversation_id": conversation_id,
    }


async def _comment_in_conversation(
    session: AsyncSession, user: str, unlock_id: uuid.UUID, comment: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """(conversation, message): the comment as the customer's message in the unlock's conversation."""
    conversation = await conversations.open_conversation(session, unlock_id)
    message = await conversations.add_customer_message(session, conversation, user, comment, kind="feedback")
    return conversation, message["id"]


async def give_feedback(
    session: AsyncSession, settings: Settings, *, user: str, unlock_id: uuid.UUID, rating: int, comment: str | None
) -> dict[str, Any]:
    unlock = await conversations.own_unlock(session, user, unlock_id)
    if unlock["redeemed_at"] is None:
        raise Conflict("feedback is for a redeemed offer: this one has not been redeemed", code="not_redeemed")
    conversation = message = None
    if comment is not None:
        # First, as a comment needs its message: a second feedback is refused below all the same, and
        # its message goes with the transaction.
        conversation, message = await _comment_in_conversation(session, user, unlock_id, comment)
    params = {
        "unlock": unlock_id,
        "rating": rating,
        "comment": comment,
        "message": message,
        "edit_minutes": settings.feedback_edit_minutes,
    }
    row = (await session.execute(GIVE_SQL, params)).mappings().first()
    if row is None:
        raise Conflict("this unlock already has feedback: change it with PATCH", code="feedback_exists")
    # The webhook's outbox row, in this transaction (offers/webhooks/outbox.py).
    await record_customer_event(session, "feedback_received", unlock_id=unlock_id, data={"feedback_id": row["id"]})
    return _out(dict(row), conversation)


async def change_feedback(
    session: AsyncSession,
    settings: Settings,
    *,
    user: str,
    unlock_id: uuid.UUID,
    rating: int | None,
    comment: str | None,
) -> dict[str, Any]:
    """Change the rating or the comment (None: unchanged) within the edit window."""
    await conversations.own_unlock(session, user, unlock_id)
    edit = {"unlock": unlock_id, "edit_minutes": settings.feedback_edit_minutes}
    found = (await session.execute(LOCK_SQL, edit)).mappings().first()
    if found is None:
        raise NotFound("this unlock has no feedback yet: give it with POST")
    if not found["editable"]:
        raise Conflict(
            f"feedback can be changed only within {settings.feedback_edit_minutes} minutes of giving it",
            code="feedback_locked",
            editable_until=found["editable_until"].isoformat(),
        )
    message = found["message_id"]
    if comment is not None and comment != found["comment"]:
        if message is None:
            _, message = await _comment_in_conversation(session, user, unlock_id, comment)
        else:
            await conversations.edit_feedback_message(session, message, comment)
    params = edit | {
        "feedback": found["id"],
        "rating": found["rating"] if rating is None else rating,
        "comment": found["comment"] if comment is None else comment,
        "message": message,
    }
    row = dict((await session.execute(CHANGE_SQL, params)).mappings().one())
    conversation = (await session.execute(CONVERSATION_OF_UNLOCK_SQL, {"unlock": unlock_id})).scalar()
    return _out(row, conversation if row["comment"] is not None else None)
