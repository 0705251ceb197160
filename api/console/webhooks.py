"""Webhooks in the console: the merchant's endpoints (add one, with its signing secret shown once;
delete; enable again after it was disabled, with the reason it was), and an endpoint's deliveries
with each attempt's status and error, the next retry, and a button to redeliver.

Every action calls what the API calls (api/audited.py over offers.webhooks.endpoints, which records
the change in the audit trail), so the page and /v1/webhooks cannot disagree. The secret is shown
on the page that answers the form that made it, never in a URL, and never again. Who: a
merchant's admins; marketers and staff get the 403 page; another merchant's (or a missing)
endpoint is the 404 page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api import audited
from api.console.pages import forbidden, not_found, parse_id, render
from api.console.session import ConsoleUser, check_csrf
from api.deps import Session, SettingsDep, merchant_of
from api.webhook_schemas import WebhookIn
from core.auth import Principal, Role
from core.errors import NotFound, ProblemError
from core.keyset import DEFAULT_LIMIT
from offers.webhooks import EVENT_TYPES, endpoints

router = APIRouter(prefix="/dashboard", include_in_schema=False)

EVENT_LABELS = {
    "offer_unlocked": "an offer is unlocked",
    "offer_redeemed": "a code is redeemed",
    "redemption_voided": "a redemption is voided",
    "feedback_received": "a customer gives feedback",
    "message_received": "a customer writes a message",
    "budget_exhausted": "an offer's or a campaign's budget runs out",
    "srm_alert": "a campaign's split between treatment and control breaks",
}


def in_utc(value: Any) -> Any:
    """Times shown as UTC (the pages say so) whatever the database session's time zone; nested rows too."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {key: in_utc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [in_utc(item) for item in value]
    return value


async def _list_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    *,
    created: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "webhooks.html",
        principal,
        status_code=status_code,
        endpoints=in_utc(await endpoints.list_endpoints(session, merchant_of(principal))),
        event_types=EVENT_TYPES,
        event_labels=EVENT_LABELS,
        created=created,
        errors=errors or {},
        form=form or {"url": "", "events": list(EVENT_TYPES)},
    )


@router.get("/webhooks")
async def webhooks(request: Request, principal: ConsoleUser, session: Session) -> Response:
    if principal.role != Role.MERCHANT_ADMIN:
        return forbidden(request, principal)
    return await _list_page(request, principal, session)


@router.post("/webhooks")
async def add_webhook(request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep) -> Response:
    """Make an endpoint; the answer shows its secret, once."""
    await check_csrf(request, settings)
    if principal.role != Role.MERCHANT_ADMIN:
        return forbidden(request, principal)
    raw = await request.form()
    form = {"url": str(raw.get("url") or "").strip(), "events": [str(e) for e in raw.getlist("events")]}
    errors: dict[str, str] = {}
    try:
        body = WebhookIn.model_validate(form)
    except ValidationError as exc:
        for detail in exc.errors():
            where = str(detail["loc"][0])
            errors.setdefault(where, "choose at least one event" if where == "events" else detail["msg"])
        return await _list_page(request, principal, session, errors=errors, form=form, status_code=422)
    try:
        made = await audited.create_webhook(session, settings, principal, url=body.url, events=body.events)
    except ProblemError as problem:
        refused: list[dict[str, Any]] = problem.errors or [{"field": "url", "message": problem.detail}]
        for error in refused:
            errors[error["field"]] = error["message"]
        return await _list_page(request, principal, session, errors=errors, form=form, status_code=problem.status)
    return await _list_page(request, principal, session, created=made)


async def _own(request: Request, principal: Principal, session: AsyncSession, raw_id: str) -> dict[str, Any] | Response:
    """The admin's own endpoint, else the page that refuses: 403 for another role, 404 for an id that is
    not one of the merchant's endpoints."""
    if principal.role != Role.MERCHANT_ADMIN:
        return forbidden(request, principal)
    endpoint_id = parse_id(raw_id)
    try:
        if endpoint_id is not None:
            return await endpoints.get_endpoint(session, merchant_of(principal), endpoint_id)
    except NotFound:
        pass
    return not_found(request, principal)


@router.post("/webhooks/{endpoint_id}/delete")
async def delete_webhook(
    request: Request, endpoint_id: str, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    found = await _own(request, principal, session, endpoint_id)
    if isinstance(found, Response):
        return found
    await audited.delete_webhook(session, principal, found["id"])
    return RedirectResponse("/dashboard/webhooks", 303)


@router.post("/webhooks/{endpoint_id}/enable")
async def enable_webhook(
    request: Request, endpoint_id: str, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    found = await _own(request, principal, session, endpoint_id)
    if isinstance(found, Response):
        return found
    await audited.enable_webhook(session, principal, found["id"])
    return RedirectResponse(f"/dashboard/webhooks/{found['id']}", 303)


async def _deliveries_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    endpoint: dict[str, Any],
    *,
    cursor: str | None = None,
    message: str | None = None,
    problem: str | None = None,
) -> HTMLResponse:
    page = await endpoints.deliveries_page(
        session, merchant_of(principal), endpoint["id"], cursor=cursor, limit=DEFAULT_LIMIT
    )
    return render(
        request,
        "webhook.html",
        principal,
        endpoint=in_utc(endpoint),
        deliveries=in_utc(page["items"]),
        next_cursor=page["next_cursor"],
        event_labels=EVENT_LABELS,
        message=message,
        problem=problem,
    )


@router.get("/webhooks/{endpoint_id}")
async def webhook(
    request: Request, endpoint_id: str, principal: ConsoleUser, session: Session, cursor: str | None = None
) -> Response:
    """An endpoint and its deliveries, newest first (?cursor= for older ones)."""
    found = await _own(request, principal, session, endpoint_id)
    if isinstance(found, Response):
        return found
    try:
        return await _deliveries_page(request, principal, session, found, cursor=cursor)
    except ProblemError:  # a cursor the page did not make: start from the newest
        return await _deliveries_page(request, principal, session, found)


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    request: Request,
    endpoint_id: str,
    delivery_id: str,
    principal: ConsoleUser,
    session: Session,
    settings: SettingsDep,
) -> Response:
    """Send a delivery again soon: same webhook-id, same body."""
    await check_csrf(request, settings)
    found = await _own(request, principal, session, endpoint_id)
    if isinstance(found, Response):
        return found
    delivery = parse_id(delivery_id)
    if delivery is None:
        return not_found(request, principal)
    try:
        again = await audited.redeliver_webhook(session, principal, found["id"], delivery)
    except NotFound:
        return not_found(request, principal)
    except ProblemError as problem:
        return await _deliveries_page(request, principal, session, found, problem=problem.detail)
    message = f"{again['event_id']} will be sent again within a few seconds."
    return await _deliveries_page(request, principal, session, found, message=message)
