"""Customer voice in the console: the inbox of conversations with customers, the customer who has
waited longest at the top, and one conversation where staff read and answer it, or close it.

Every page and action calls what the API calls (offers.conversations: inbox_page,
merchant_conversation, reply, close, mark_read_by_merchant), so the console and
GET/POST /v1/conversations cannot disagree. Customers appear as their pseudonym for this merchant.

Who: admins and staff answer and close; marketers read. Opening a conversation as admin or staff
marks the customer's messages read for the merchant. A reply or a close is a POST with the
session's CSRF token, answered with a redirect back to the conversation (a reload sends nothing
twice). Times are shown as the venue's clock shows them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.console.campaign_results import format_minutes
from api.console.pages import forbidden, not_found, render
from api.console.session import ConsoleUser, check_csrf
from api.console.till import local_time
from api.conversation_schemas import MessageText
from api.deps import Session, SettingsDep, merchant_of
from core.auth import Principal, Role
from core.errors import NotFound, ProblemError
from core.keyset import DEFAULT_LIMIT
from core.settings import Settings
from offers import conversations

router = APIRouter(prefix="/dashboard", include_in_schema=False)

RESPONDERS = frozenset({Role.MERCHANT_ADMIN, Role.MERCHANT_STAFF})
TABS: dict[str, str] = {"open": "Waiting for an answer", "answered": "Answered", "closed": "Closed", "all": "All"}
PREVIEW_CHARS = 140
MESSAGE_TEXT: TypeAdapter[str] = TypeAdapter(MessageText)
NOTICES: dict[str, str] = {"sent": "Your answer was sent.", "closed": "The conversation is closed."}


def preview(text: str) -> str:
    """The start of a message, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1].rstrip() + "…"


def waited(since: datetime | None, now: datetime) -> str:
    """How long ago, as people say it: 12 min, 1 h 35 min, 2 d 3 h."""
    if since is None:
        return ""
    return format_minutes(max(0.0, (now - since).total_seconds() / 60))


@router.get("/conversations")
async def inbox(
    request: Request,
    principal: ConsoleUser,
    session: Session,
    settings: SettingsDep,
    status: str = "open",
    cursor: str | None = None,
) -> Response:
    """The merchant's conversations, one tab per status (open first: the longest waiting on top)."""
    tab = status if status in TABS else "open"
    try:
        page = await conversations.inbox_page(
            session,
            settings,
            merchant=merchant_of(principal),
            status=None if tab == "all" else cast(conversations.Status, tab),
            venue=None,
            campaign=None,
            rating_max=None,
            cursor=cursor,
            limit=DEFAULT_LIMIT,
        )
    except ProblemError:  # a cursor this page did not make: start again at the top
        return RedirectResponse(f"/dashboard/conversations?status={tab}", 303)
    now = datetime.now(UTC)
    rows = [
        item
        | {
            "preview": preview(item["last_message"]["body"]) if item["last_message"] else "",
            "waited": waited(item["waiting_since"], now),
            "changed": local_time(item["last_message_at"], item["venue"]["timezone"]),
        }
        for item in page["items"]
    ]
    return render(
        request,
        "conversations.html",
        principal,
        rows=rows,
        tab=tab,
        tabs=TABS,
        next_cursor=page["next_cursor"],
        first_page=cursor is None,
    )


@router.get("/conversations/{conversation_id:uuid}")
async def conversation(
    request: Request,
    conversation_id: uuid.UUID,
    principal: ConsoleUser,
    session: Session,
    settings: SettingsDep,
    notice: str | None = None,
) -> HTMLResponse:
    return await _conversation_page(
        request, principal, session, settings, conversation_id, notice=NOTICES.get(notice or "")
    )


async def _conversation_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    settings: Settings,
    conversation_id: uuid.UUID,
    *,
    notice: str | None = None,
    problem: str | None = None,
    draft: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    merchant = merchant_of(principal)
    can_answer = principal.role in RESPONDERS
    try:
        found = await conversations.merchant_conversation(
            session, settings, merchant=merchant, conversation_id=conversation_id
        )
        if can_answer and found["unread"]:
            # Opened by someone who answers: the customer's messages are read (the figure shown is before).
            await conversations.mark_read_by_merchant(session, merchant=merchant, conversation_id=conversation_id)
    except NotFound:
        return not_found(request, principal)
    zone = found["venue"]["timezone"]
    now = datetime.now(UTC)
    messages = [m | {"local": local_time(m["created_at"], zone)} for m in found["messages"]]
    return render(
        request,
        "conversation.html",
        principal,
        conversation=found,
        messages=messages,
        zone=zone,
        waited=waited(found["waiting_since"], now),
        local=lambda moment: local_time(moment, zone),
        can_answer=can_answer,
        notice=notice,
        problem=problem,
        draft=draft,
        max_chars=conversations.BODY_MAX_CHARS,
        status_code=status_code,
    )


@router.post("/conversations/{conversation_id:uuid}/reply")
async def reply(
    request: Request, conversation_id: uuid.UUID, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if principal.role not in RESPONDERS:
        return forbidden(request, principal)
    form = await request.form()
    typed = form.get("body")
    typed = typed if isinstance(typed, str) else ""
    try:
        body = MESSAGE_TEXT.validate_python(typed)
    except ValidationError as exc:
        problem = f"The answer was not sent: it {exc.errors()[0]['msg'].lower()}."
        if not typed.strip():
            problem = "The answer was not sent: write something first."
        return await _conversation_page(
            request, principal, session, settings, conversation_id, problem=problem, draft=typed, status_code=422
        )
    try:
        await conversations.reply(
            session, merchant=merchant_of(principal), staff=principal.sub, conversation_id=conversation_id, body=body
        )
    except NotFound:
        return not_found(request, principal)
    return RedirectResponse(f"/dashboard/conversations/{conversation_id}?notice=sent", 303)


@router.post("/conversations/{conversation_id:uuid}/close")
async def close(
    request: Request, conversation_id: uuid.UUID, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if principal.role not in RESPONDERS:
        return forbidden(request, principal)
    try:
        await conversations.close(session, merchant=merchant_of(principal), conversation_id=conversation_id)
    except NotFound:
        return not_found(request, principal)
    return RedirectResponse(f"/dashboard/conversations/{conversation_id}?notice=closed", 303)
