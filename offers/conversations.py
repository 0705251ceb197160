"""Conversations between a customer and the merchant about one unlock, and their messages.

One conversation per unlock (a unique constraint). Only the customer opens one: with a message,
at any time, redeemed or not (the code did not work, staff refused it, a question), or with a
feedback comment (offers/feedback.py). Its status says whose turn it is:

- open: the customer wrote last; `waiting_since` is their oldest message not answered yet;
- answered: the merchant wrote last;
- closed: the merchant closed it. A new customer message opens it again; a reply answers it.

Each side has a read mark (`customer_read_at`, `merchant_read_at`): its unread count is the other
side's messages after the mark. Writing marks one's own side read; so does `mark_read_*`.

Every message takes the conversation's row lock first (SELECT … FOR UPDATE) and is stamped with
the clock after it, so one conversation's messages are written one at a time, in the order of
their timestamps: the status always follows the last message, a read mark never covers a message
not yet committed, and the customer's cap of messages per hour is exact under concurrency.

The merchant sees the customer as a pseudonym (core/pseudonyms.py), never the `sub`; the
customer sees the merchant's replies without the staff member who wrote them.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound, TooManyRequests, ValidationFailed
from core.keyset import after_cursor, decode_cursor, encode_cursor, page_of
from core.pseudonyms import customer_pseudonym
from core.settings import Settings
from offers.webhooks.outbox import record_customer_event

Status = Literal["open", "answered", "closed"]
STATUSES: tuple[Status, ...] = ("open", "answered", "closed")
BODY_MAX_CHARS = 2000  # also a CHECK in the schema

# --------------------------------------------------------------------------- writing

OWN_UNLOCK_SQL = text("SELECT id, redeemed_at FROM unlocks WHERE id = :unlock AND user_id = :user")

# The unlock's conversation, made on the customer's first word. A concurrent first word waits on
# the unique constraint and then finds the row this one made.
OPEN_SQL = text("""
    INSERT INTO conversations (unlock_id, merchant_id, campaign_id, offer_id, venue_id, user_id,
                               created_at, last_message_at, waiting_since)
    SELECT u.id, u.merchant_id, u.campaign_id, u.offer_id, u.venue_id, u.user_id, t.at, t.at, t.at
    FROM unlocks u, (SELECT clock_timestamp() AS at) t
    WHERE u.id = :unlock
    ON CONFLICT (unlock_id) DO NOTHING
""")
LOCK_OF_UNLOCK_SQL = text("SELECT id FROM conversations WHERE unlock_id = :unlock FOR UPDATE")
LOCK_FOR_MERCHANT_SQL = text(
    "SELECT id FROM conversations WHERE id = :conversation AND merchant_id = :merchant FOR UPDATE"
)

# After the row lock, so the stamp orders this message after every one already committed.
ADD_MESSAGE_SQL = text("""
    INSERT INTO conversation_messages (conversation_id, author, kind, author_sub, body, created_at)
    VALUES (:conversation, :author, :kind, :sub, :body, clock_timestamp())
    RETURNING id, conversation_id, author, kind, author_sub, body, created_at, edited_at
""")
CUSTOMER_WROTE_SQL = text("""
    UPDATE conversations
    SET status = 'open', waiting_since = coalesce(waiting_since, :at), closed_at = NULL,
        last_message_at = :at, customer_read_at = :at
    WHERE id = :conversation
""")
MERCHANT_WROTE_SQL = text("""
    UPDATE conversations
    SET status = 'answered', waiting_since = NULL, closed_at = NULL, last_message_at = :at,
        first_reply_at = coalesce(first_reply_at, :at), merchant_read_at = :at
    WHERE id = :conversation
""")
CLOSE_SQL = text("""
    UPDATE conversations
    SET status = 'closed', waiting_since = NULL, closed_at = coalesce(closed_at, clock_timestamp())
    WHERE id = :conversation AND merchant_id = :merchant
    RETURNING id
""")
EDIT_FEEDBACK_MESSAGE_SQL = text("""
    UPDATE conversation_messages SET body = :body, edited_at = clock_timestamp()
    WHERE id = :message AND kind = 'feedback'
""")

# The customer's cap: the cap-th newest of their messages in the last hour, if there is one, says
# how long until they may write again (when it leaves the hour).
CAP_WAIT_SQL = text("""
    SELECT extract(epoch FROM created_at + interval '1 hour' - clock_timestamp())::float8 AS wait_s
    FROM conversation_messages
    WHERE conversation_id = :conversation AND author = 'customer'
      AND created_at > clock_timestamp() - interval '1 hour'
    ORDER BY created_at DESC
    OFFSET :cap - 1 LIMIT 1
""")

# A read mark moves to the other side's newest message this transaction sees, never back.
CUSTOMER_READ_SQL = text("""
    UPDATE conversations c SET customer_read_at = greatest(c.customer_read_at, m.newest)
    FROM (SELECT max(created_at) AS newest FROM conversation_messages
          WHERE conversation_id = :conversation AND author = 'merchant') m
    WHERE c.id = :conversation AND c.user_id = :user
    RETURNING c.id
""")
MERCHANT_READ_SQL = text("""
    UPDATE conversations c SET merchant_read_at = greatest(c.merchant_read_at, m.newest)
    FROM (SELECT max(created_at) AS newest FROM conversation_messages
          WHERE conversation_id = :conversation AND author = 'customer') m
    WHERE c.id = :conversation AND c.merchant_id = :merchant
    RETURNING c.id
""")


def conversation_not_found() -> NotFound:
    """Missing and another merchant's (or customer's) conversations are the same 404."""
    return NotFound("conversation not found")


async def own_unlock(session: AsyncSession, user: str, unlock_id: uuid.UUID) -> dict[str, Any]:
    """The caller's unlock (id, redeemed_at); another user's is the same 404 as a missing one."""
    row = (await session.execute(OWN_UNLOCK_SQL, {"unlock": unlock_id, "user": user})).mappings().first()
    if row is None:
        raise NotFound("unlock not found")
    return dict(row)


async def open_conversation(session: AsyncSession, unlock_id: uuid.UUID) -> uuid.UUID:
    """The unlock's conversation, made if it has none, locked for this transaction. The caller has
    checked that the unlock is the customer's."""
    await session.execute(OPEN_SQL, {"unlock": unlock_id})
    conversation: uuid.UUID = (await session.execute(LOCK_OF_UNLOCK_SQL, {"unlock": unlock_id})).scalar_one()
    return conversation


async def _refuse_over_cap(session: AsyncSession, settings: Settings, conversation: uuid.UUID) -> None:
    cap = settings.conversation_messages_per_hour
    wait_s = (await session.execute(CAP_WAIT_SQL, {"conversation": conversation, "cap": cap})).scalar()
    if wait_s is not None:
        raise TooManyRequests(
            math.ceil(wait_s), f"at most {cap} messages an hour in one conversation; wait before writing again"
        )


async def _add(
    session: AsyncSession, conversation: uuid.UUID, *, author: str, kind: str, sub: str, body: str
) -> dict[str, Any]:
    params = {"conversation": conversation, "author": author, "kind": kind, "sub": sub, "body": body}
    message = dict((await session.execute(ADD_MESSAGE_SQL, params)).mappings().one())
    wrote = CUSTOMER_WROTE_SQL if author == "customer" else MERCHANT_WROTE_SQL
    await session.execute(wrote, {"conversation": conversation, "at": message["created_at"]})
    return message


async def add_customer_message(
    session: AsyncSession, conversation: uuid.UUID, user: str, body: str, *, kind: str = "message"
) -> dict[str, Any]:
    """A message of the customer in a conversation the caller has locked (open_conversation)."""
    return await _add(session, conversation, author="customer", kind=kind, sub=user, body=body)


async def edit_feedback_message(session: AsyncSession, message: uuid.UUID, body: str) -> None:
    """A feedback's comment changed within its edit window: its message changes with it, marked edited."""
    await session.execute(EDIT_FEEDBACK_MESSAGE_SQL, {"message": message, "body": body})


async def write_as_customer(
    session: AsyncSession, settings: Settings, *, user: str, unlock_id: uuid.UUID, body: str
) -> dict[str, Any]:
    """The customer writes to the merchant about their unlock, redeemed or not: the unlock's
    conversation is opened (or joined, and opened again if it was answered or closed). Past the
    cap of messages per hour in one conversation it is 429 with the wait."""
    await own_unlock(session, user, unlock_id)
    conversation = await open_conversation(session, unlock_id)
    await _refuse_over_cap(session, settings, conversation)
    message = await add_customer_message(session, conversation, user, body)
    # The webhook's outbox row, in this transaction (offers/webhooks/outbox.py).
    ids = {"conversation_id": conversation, "message_id": message["id"]}
    await record_customer_event(session, "message_received", unlock_id=unlock_id, data=ids)
    return customer_message(message)


async def reply(
    session: AsyncSession, *, merchant: uuid.UUID, staff: str, conversation_id: uuid.UUID, body: str
) -> dict[str, Any]:
    """The merchant answers (a closed conversation too, which is then answered again)."""
    await _lock_for_merchant(session, merchant, conversation_id)
    return merchant_message(
        await _add(session, conversation_id, author="merchant", kind="message", sub=staff, body=body)
    )


async def close(session: AsyncSession, *, merchant: uuid.UUID, conversation_id: uuid.UUID) -> None:
    """Nothing more to do; closing a closed conversation changes nothing."""
    if (await session.execute(CLOSE_SQL, {"conversation": conversation_id, "merchant": merchant})).first() is None:
        raise conversation_not_found()


async def mark_read_by_customer(session: AsyncSession, *, user: str, conversation_id: uuid.UUID) -> None:
    params = {"conversation": conversation_id, "user": user}
    if (await session.execute(CUSTOMER_READ_SQL, params)).first() is None:
        raise conversation_not_found()


async def mark_read_by_merchant(session: AsyncSession, *, merchant: uuid.UUID, conversation_id: uuid.UUID) -> None:
    params = {"conversation": conversation_id, "merchant": merchant}
    if (await session.execute(MERCHANT_READ_SQL, params)).first() is None:
        raise conversation_not_found()


async def _lock_for_merchant(session: AsyncSession, merchant: uuid.UUID, conversation_id: uuid.UUID) -> None:
    params = {"conversation": conversation_id, "merchant": merchant}
    if (await session.execute(LOCK_FOR_MERCHANT_SQL, params)).first() is None:
        raise conversation_not_found()


# --------------------------------------------------------------------------- reading

_COLUMNS = """
    c.id, c.unlock_id, c.merchant_id, c.campaign_id, c.user_id, c.status, c.created_at, c.last_message_at,
    c.waiting_since, c.first_reply_at, c.closed_at, c.sort_at,
    c.venue_id, v.name AS venue_name, v.timezone AS venue_timezone,
    c.offer_id, o.title AS offer_title, mr.name AS merchant_name,
    '****-****-' || right(u.code, 4) AS code_masked, u.unlocked_at, u.expires_at, u.redeemed_at,
    CASE WHEN u.redeemed_at IS NOT NULL THEN 'redeemed'
         WHEN u.expires_at <= now() THEN 'expired' ELSE 'active' END AS unlock_state,
    f.rating, f.comment AS feedback_comment, f.created_at AS feedback_created_at,
    f.updated_at AS feedback_updated_at,
    (SELECT count(*) FROM conversation_messages x
     WHERE x.conversation_id = c.id AND x.author = 'customer'
       AND x.created_at > coalesce(c.merchant_read_at, '-infinity')) AS unread_by_merchant,
    (SELECT count(*) FROM conversation_messages x
     WHERE x.conversation_id = c.id AND x.author = 'merchant'
       AND x.created_at > coalesce(c.customer_read_at, '-infinity')) AS unread_by_customer
"""
_FROM = """
    FROM conversations c
    JOIN unlocks u ON u.id = c.unlock_id
    JOIN venues v ON v.id = c.venue_id
    JOIN offers o ON o.id = c.offer_id
    JOIN merchants mr ON mr.id = c.merchant_id
    LEFT JOIN unlock_feedback f ON f.unlock_id = c.unlock_id
"""
MERCHANT_CONVERSATION_SQL = text(f"SELECT {_COLUMNS} {_FROM} WHERE c.id = :conversation AND c.merchant_id = :merchant")
MESSAGES_SQL = text("""
    SELECT id, conversation_id, author, kind, author_sub, body, created_at, edited_at
    FROM conversation_messages WHERE conversation_id = ANY(:ids)
    ORDER BY conversation_id, created_at, id
""")

# The customer's conversations, newest first on (created_at, id), which never change: a keyset
# page (core/keyset.py), so conversations opened while the app pages never shift what it has seen.
_MINE = f"""
    SELECT {_COLUMNS} {_FROM}
    WHERE c.user_id = :user {{after}}
    ORDER BY c.created_at DESC, c.id DESC
    LIMIT :limit
"""
MY_CONVERSATIONS_SQL = {
    paging: text(_MINE.format(after=after_cursor("c.created_at", "c.id") if paging else "")) for paging in (False, True)
}

# The merchant's inbox in two parts: open conversations, the customer waiting longest first, then
# the others (answered, closed), the latest change first; sort_at is the column each part orders
# by, on the (merchant_id, status, sort_at, id) index. A filter left null is no filter.
_INBOX = f"""
    SELECT {_COLUMNS}, last.author AS last_author, last.body AS last_body, last.created_at AS last_at
    {_FROM}
    LEFT JOIN LATERAL (
        SELECT m.author, m.body, m.created_at FROM conversation_messages m
        WHERE m.conversation_id = c.id ORDER BY m.created_at DESC, m.id DESC LIMIT 1
    ) last ON true
    WHERE c.merchant_id = :merchant AND {{status}}
      AND (CAST(:venue AS uuid) IS NULL OR c.venue_id = :venue)
      AND (CAST(:campaign AS uuid) IS NULL OR c.campaign_id = :campaign)
      AND (CAST(:rating_max AS integer) IS NULL OR f.rating <= :rating_max)
      {{after}}
    ORDER BY c.sort_at {{direction}}, c.id {{direction}}
    LIMIT :limit
"""
InboxPart = Literal["open", "one", "rest"]
_PARTS: dict[InboxPart, tuple[str, str]] = {
    "open": ("c.status = 'open'", "ASC"),
    "one": ("c.status = :status", "DESC"),  # answered or closed
    "rest": ("c.status <> 'open'", "DESC"),
}
INBOX_SQL = {
    (part, paging): text(
        _INBOX.format(
            status=status,
            direction=direction,
            after=(
                f"AND (c.sort_at, c.id) {'>' if direction == 'ASC' else '<'} (:after_at, :after_id)" if paging else ""
            ),
        )
    )
    for part, (status, direction) in _PARTS.items()
    for paging in (False, True)
}
# A cursor says which part it is in: "o" open, "r" the rest, then the position (core/keyset.py).
OPEN_TAG, REST_TAG = "o", "r"


def customer_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as the customer sees it: never which staff member wrote a reply."""
    return {
        "id": message["id"],
        "conversation_id": message["conversation_id"],
        "author": message["author"],
        "kind": message["kind"],
        "body": message["body"],
        "created_at": message["created_at"],
        "edited_at": message["edited_at"],
    }


def merchant_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as the merchant sees it: the staff member of a reply, never the customer's sub."""
    return customer_message(message) | {"staff": message["author_sub"] if message["author"] == "merchant" else None}


def _feedback(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row["rating"] is None:
        return None
    return {
        "rating": row["rating"],
        "comment": row["feedback_comment"],
        "created_at": row["feedback_created_at"],
        "updated_at": row["feedback_updated_at"],
    }


def _common(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "unlock_id": row["unlock_id"],
        "status": row["status"],
        "venue": {"id": row["venue_id"], "name": row["venue_name"], "timezone": row["venue_timezone"]},
        "offer": {"id": row["offer_id"], "title": row["offer_title"]},
        "feedback": _feedback(row),
        "created_at": row["created_at"],
        "last_message_at": row["last_message_at"],
        "closed_at": row["closed_at"],
    }


def merchant_view(settings: Settings, row: Mapping[str, Any]) -> dict[str, Any]:
    """A conversation as its merchant sees it, without its messages."""
    return _common(row) | {
        "customer": customer_pseudonym(settings, row["merchant_id"], row["user_id"]),
        "campaign_id": row["campaign_id"],
        "unlock": {
            "id": row["unlock_id"],
            "code_masked": row["code_masked"],
            "state": row["unlock_state"],
            "unlocked_at": row["unlocked_at"],
            "expires_at": row["expires_at"],
            "redeemed_at": row["redeemed_at"],
        },
        "waiting_since": row["waiting_since"],
        "first_reply_at": row["first_reply_at"],
        "unread": row["unread_by_merchant"],
    }


def customer_view(row: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _common(row) | {
        "merchant": {"name": row["merchant_name"]},
        "unread": row["unread_by_customer"],
        "messages": [customer_message(m) for m in messages],
    }


async def _messages(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    found: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        for row in (await session.execute(MESSAGES_SQL, {"ids": ids})).mappings():
            found[row["conversation_id"]].append(dict(row))
    return found


async def merchant_conversation(
    session: AsyncSession, settings: Settings, *, merchant: uuid.UUID, conversation_id: uuid.UUID
) -> dict[str, Any]:
    """One of the merchant's conversations with every message, oldest first; another merchant's is 404."""
    params = {"conversation": conversation_id, "merchant": merchant}
    row = (await session.execute(MERCHANT_CONVERSATION_SQL, params)).mappings().first()
    if row is None:
        raise conversation_not_found()
    messages = (await _messages(session, [row["id"]]))[row["id"]]
    return merchant_view(settings, dict(row)) | {"messages": [merchant_message(m) for m in messages]}


async def my_conversations(session: AsyncSession, *, user: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """The customer's conversations, newest first, each with every message (the merchant's replies
    included) and its unread count; reading them marks nothing read."""
    params: dict[str, Any] = {"user": user, "limit": limit + 1}
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    rows = [dict(r) for r in (await session.execute(MY_CONVERSATIONS_SQL[cursor is not None], params)).mappings()]
    page = page_of(rows, limit, lambda row: (row["created_at"], row["id"]))
    messages = await _messages(session, [row["id"] for row in page["items"]])
    return page | {"items": [customer_view(row, messages[row["id"]]) for row in page["items"]]}


def _inbox_cursor(cursor: str | None) -> tuple[str | None, tuple[datetime, uuid.UUID] | None]:
    if cursor is None:
        return None, None
    tag, position = cursor[:1], cursor[1:]
    if tag not in (OPEN_TAG, REST_TAG):
        raise ValidationFailed.for_field("cursor", "invalid_cursor", "pass the next_cursor of the previous page")
    return tag, decode_cursor(position)


async def inbox_page(
    session: AsyncSession,
    settings: Settings,
    *,
    merchant: uuid.UUID,
    status: Status | None,
    venue: uuid.UUID | None,
    campaign: uuid.UUID | None,
    rating_max: int | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page of the merchant's conversations: open ones first, the customer waiting longest at
    the top, then answered and closed ones, the latest change first; with `status`, only those.
    The caller checks that the venue and campaign are the merchant's."""
    tag, after = _inbox_cursor(cursor)
    base: dict[str, Any] = {
        "merchant": merchant,
        "status": status,
        "venue": venue,
        "campaign": campaign,
        "rating_max": rating_max,
    }
    rows: list[tuple[str, dict[str, Any]]] = []

    async def fetch(part: InboxPart, part_tag: str, wanted: int) -> None:
        params = base | {"limit": wanted}
        paging = after is not None and tag == part_tag
        if paging:
            assert after is not None
            params["after_at"], params["after_id"] = after
        found = await session.execute(INBOX_SQL[(part, paging)], params)
        rows.extend((part_tag, dict(row)) for row in found.mappings())

    if status in (None, "open") and tag != REST_TAG:
        await fetch("open", OPEN_TAG, limit + 1)
    if status != "open" and len(rows) <= limit:
        await fetch("rest" if status is None else "one", REST_TAG, limit + 1 - len(rows))
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last_tag, last = items[-1]
        next_cursor = last_tag + encode_cursor(last["sort_at"], last["id"])
    return {
        "items": [
            merchant_view(settings, row)
            | {
                "last_message": {"author": row["last_author"], "body": row["last_body"], "created_at": row["last_at"]}
                if row["last_author"] is not None
                else None
            }
            for _, row in items
        ],
        "next_cursor": next_cursor,
    }
