"""The till in the console: pick the venue once, look a code up, redeem it, and (admins) void a
mistaken redemption from the list of recent ones.

Every action calls what the API calls (offers.redemption: look_up_code, redeem,
void_redemption, redemptions_page), so the till and GET /v1/codes, POST /v1/redemptions and
GET /v1/redemptions cannot disagree, and the guessing limit counts look-ups and redemptions
made here like those made through the API.

- The venue is remembered in a cookie of this browser (a till stays at its venue), set when
  the venue is picked; a remembered venue that is no longer the merchant's is forgotten.
- Codes travel only in POST bodies, never in a URL (URLs end up in histories and logs).
- Each look-up makes a new Idempotency-Key carried by its redeem form: a double click or a
  reload of the answer replays the one redemption instead of making a second.

Who: merchant staff and admins; a marketer gets the 403 page. Only an admin voids.
A refused look-up, redemption or void is a normal answer at a till: the page (200) says why.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api.console.pages import forbidden, not_found, own_venue, parse_id, render
from api.console.session import ConsoleUser, check_csrf
from api.deps import RedisDep, Session, SettingsDep, merchant_of
from api.idempotency import KEY_PATTERN
from core.auth import Principal, Role
from core.errors import ProblemError
from core.settings import Settings
from geo import venues
from geo.venues import Venue
from offers import redemption

router = APIRouter(prefix="/dashboard", include_in_schema=False)

TILL_ROLES = frozenset({Role.MERCHANT_STAFF, Role.MERCHANT_ADMIN})
VENUE_COOKIE = "till_venue"
VENUE_COOKIE_MAX_AGE_S = 400 * 86400  # the longest a browser keeps a cookie
MAX_VENUES = 500  # in the picker
RECENT = 20  # redemptions listed under the till

MessageKind = Literal["ready", "alert", "waiting"]


@dataclass(frozen=True)
class Message:
    kind: MessageKind  # the console's banner classes: ready (done), alert (refused), waiting (try later)
    text: str


def local_time(moment: datetime | str | None, timezone: str) -> str:
    """A moment as the venue's clock shows it, e.g. "2026-12-03 14:05"."""
    if moment is None:
        return ""
    if isinstance(moment, str):  # a time carried in a problem's extra members (JSON from the database)
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _same_day_short(moment: datetime, day_of: datetime, timezone: str) -> str:
    """HH:MM when on the same local day as `day_of`, else the date too."""
    shown, reference = local_time(moment, timezone), local_time(day_of, timezone)
    return shown[-5:] if shown[:10] == reference[:10] else shown


def problem_message(problem: ProblemError, venue: Venue) -> Message:
    """What the till says for a refused look-up, redemption or void, in the venue's time."""
    extra = problem.extra
    match problem.code:
        case "not_found":
            return Message("alert", "Not found: there is no such code. Check it and type it again.")
        case "already_redeemed":
            return Message("alert", f"Already redeemed at {local_time(extra.get('redeemed_at'), venue.timezone)}.")
        case "expired":
            return Message("alert", f"Expired at {local_time(extra.get('expires_at'), venue.timezone)}.")
        case "rate_limited":
            seconds = max(1, int(extra.get("retry_after", 1)))  # the real remaining wait: 1 s, 2 s, 4 s, ...
            wait = f"{seconds} second{'s' * (seconds != 1)}" if seconds < 90 else f"{round(seconds / 60)} minutes"
            return Message("waiting", f"Too many attempts: wait {wait} before trying another code.")
        case "validation_error" if problem.errors and problem.errors[0]["code"] == "venue_not_in_campaign":
            return Message("alert", f"This code's campaign does not run at {venue.name}.")
        case "idempotency_key_reused":
            return Message("alert", "That redeem button belonged to another code: look the code up again.")
        case "already_voided":
            return Message("alert", f"Already voided at {local_time(extra.get('voided_at'), venue.timezone)}.")
        case "void_window_passed":
            deadline = local_time(extra.get("void_deadline"), venue.timezone)
            return Message("alert", f"Too late to void: the window closed at {deadline}.")
        case _:
            return Message("alert", problem.detail)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def _till_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    settings: Settings,
    *,
    venue: Venue | None,
    message: Message | None = None,
    lookup: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    code: str = "",
) -> HTMLResponse:
    merchant = merchant_of(principal)
    choices = await venues.list_venues(session, merchant, after=None, limit=MAX_VENUES)
    recent: list[dict[str, Any]] = []
    if venue is not None:
        page = await redemption.redemptions_page(
            await session.connection(), settings, merchant=merchant, venue=venue.id, cursor=None, limit=RECENT
        )
        recent = [
            row
            | {"redeemed_local": local_time(row["redeemed_at"], venue.timezone)}
            | {"voided_local": local_time(row["voided_at"], venue.timezone)}
            | {"deadline_local": _same_day_short(row["void_deadline"], row["redeemed_at"], venue.timezone)}
            for row in page["items"]
        ]
    if lookup is not None and venue is not None:
        lookup = lookup | {
            "expires_local": local_time(lookup["expires_at"], venue.timezone),
            "redeemed_local": local_time(lookup["redeemed_at"], venue.timezone),
        }
    response = render(
        request,
        "till.html",
        principal,
        venues=sorted(choices, key=lambda v: v.name.casefold()),
        venue=venue,
        message=message,
        lookup=lookup,
        idempotency_key=idempotency_key,
        code=code,
        recent=recent,
        can_void=principal.role == Role.MERCHANT_ADMIN,
        void_window_minutes=settings.void_window_minutes,
    )
    if venue is not None:
        response.set_cookie(
            VENUE_COOKIE,
            str(venue.id),
            max_age=VENUE_COOKIE_MAX_AGE_S,
            path="/dashboard/till",
            httponly=True,
            samesite="lax",
        )
    return response


@router.get("/till")
async def till(
    request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep, venue_id: str | None = None
) -> Response:
    """The till; ?venue_id= picks the venue (remembered), otherwise the remembered one is used."""
    if principal.role not in TILL_ROLES:
        return forbidden(request, principal)
    if venue_id is not None:
        venue = await own_venue(session, principal, venue_id)
        if venue is None:
            return not_found(request, principal)
    else:
        venue = await own_venue(session, principal, request.cookies.get(VENUE_COOKIE))
    return await _till_page(request, principal, session, settings, venue=venue)


@router.post("/till/lookup")
async def look_up(
    request: Request, principal: ConsoleUser, session: Session, redis: RedisDep, settings: SettingsDep
) -> Response:
    """What the code unlocks and its state, before redeeming; a new Idempotency-Key for its redeem button."""
    await check_csrf(request, settings)
    if principal.role not in TILL_ROLES:
        return forbidden(request, principal)
    form = await request.form()
    venue = await own_venue(session, principal, form.get("venue_id"))
    if venue is None:
        return not_found(request, principal)
    typed = _text(form, "code").strip()
    try:
        found = await redemption.look_up_code(
            await session.connection(),
            redis,
            settings,
            merchant=merchant_of(principal),
            staff=principal.sub,
            raw_code=typed,
            venue=venue.id,
        )
    except ProblemError as problem:
        return await _till_page(
            request,
            principal,
            session,
            settings,
            venue=venue,
            message=problem_message(problem, venue),
            code=typed,
        )
    message = None
    if found["state"] == "redeemed":
        message = Message("alert", f"Already redeemed at {local_time(found['redeemed_at'], venue.timezone)}.")
    elif found["state"] == "expired":
        message = Message("alert", f"Expired at {local_time(found['expires_at'], venue.timezone)}.")
    return await _till_page(
        request,
        principal,
        session,
        settings,
        venue=venue,
        message=message,
        lookup=found,
        idempotency_key=str(uuid.uuid4()),
        code=found["code"],
    )


@router.post("/till/redeem")
async def redeem(
    request: Request, principal: ConsoleUser, session: Session, redis: RedisDep, settings: SettingsDep
) -> Response:
    """Redeem the looked-up code under the look-up's Idempotency-Key: exactly once."""
    await check_csrf(request, settings)
    if principal.role not in TILL_ROLES:
        return forbidden(request, principal)
    form = await request.form()
    venue = await own_venue(session, principal, form.get("venue_id"))
    if venue is None:
        return not_found(request, principal)
    key = _text(form, "idempotency_key")
    if not KEY_PATTERN.match(key):  # only a hand-made form lacks it: look the code up again
        message = Message("alert", "Look the code up first, then redeem it.")
        return await _till_page(request, principal, session, settings, venue=venue, message=message)
    redeem_on = await session.connection()
    try:
        outcome = await redemption.redeem(
            redeem_on,
            redis,
            settings,
            merchant=merchant_of(principal),
            staff=principal.sub,
            raw_code=_text(form, "code"),
            venue=venue.id,
            idempotency_key=key,
        )
    except ProblemError as problem:
        return await _till_page(
            request,
            principal,
            session,
            settings,
            venue=venue,
            message=problem_message(problem, venue),
        )
    receipt = outcome.receipt
    when = local_time(receipt["redeemed_at"], venue.timezone)
    message = Message("ready", f"Redeemed at {when}: give “{receipt['title']}”. Terms: {receipt['terms']}")
    return await _till_page(request, principal, session, settings, venue=venue, message=message)


@router.post("/till/void")
async def void(request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep) -> Response:
    """Void a redemption of this venue within the void window, with a reason (admins only)."""
    await check_csrf(request, settings)
    if principal.role != Role.MERCHANT_ADMIN:
        return forbidden(request, principal)
    form = await request.form()
    venue = await own_venue(session, principal, form.get("venue_id"))
    redemption_id = parse_id(form.get("redemption_id"))
    if venue is None or redemption_id is None:
        return not_found(request, principal)
    reason = _text(form, "reason").strip()
    if not reason or len(reason) > 500 or "\x00" in reason:
        message = Message("alert", "Say why the redemption is voided (at most 500 characters).")
        return await _till_page(request, principal, session, settings, venue=venue, message=message)
    try:
        voided = await redemption.void_redemption(
            await session.connection(),
            settings,
            merchant=merchant_of(principal),
            admin=principal,
            redemption=redemption_id,
            reason=reason,
        )
    except ProblemError as problem:
        return await _till_page(
            request,
            principal,
            session,
            settings,
            venue=venue,
            message=problem_message(problem, venue),
        )
    message = Message(
        "ready", f"Voided at {local_time(voided['voided_at'], venue.timezone)}: the code can be used again."
    )
    return await _till_page(request, principal, session, settings, venue=venue, message=message)
