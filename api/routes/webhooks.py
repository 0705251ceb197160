"""Webhook endpoints: a merchant's admins register receivers, see their deliveries and redeliver
(offers/webhooks/)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api import audited
from api.deps import MerchantAdmin, Session, SettingsDep, merchant_of
from api.problems import error_responses
from api.webhook_schemas import (
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from core.keyset import DEFAULT_LIMIT, MAX_LIMIT
from offers.webhooks import endpoints

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=error_responses(401, 403, 422, 500))
PageSize = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


@router.post("", status_code=201, response_model=WebhookCreated, responses=error_responses(409))
async def create_webhook(
    body: WebhookIn, principal: MerchantAdmin, session: Session, settings: SettingsDep
) -> dict[str, Any]:
    """Register a receiver for the given event types. The answer carries the signing secret
    (`whsec_…`), shown this once. Deliveries follow Standard Webhooks: `webhook-id` (the event's
    stable id), `webhook-timestamp` and `webhook-signature` headers, and a JSON body with `type`,
    `timestamp` and `data`. The URL must be https (422 `url_not_allowed` otherwise, or for an
    internal address); at most 20 endpoints (409 `too_many_webhooks`)."""
    return await audited.create_webhook(session, settings, principal, url=body.url, events=body.events)


@router.get("", response_model=WebhookList)
async def list_webhooks(principal: MerchantAdmin, session: Session) -> dict[str, Any]:
    """The merchant's endpoints (never their secrets), with whether each is disabled and why."""
    return {"items": await endpoints.list_endpoints(session, merchant_of(principal)), "next_cursor": None}


@router.delete("/{webhook_id}", status_code=204, responses=error_responses(404))
async def delete_webhook(webhook_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> Response:
    """Delete an endpoint; its pending deliveries are not sent."""
    await audited.delete_webhook(session, principal, webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/enable", response_model=WebhookOut, responses=error_responses(404))
async def enable_webhook(webhook_id: uuid.UUID, principal: MerchantAdmin, session: Session) -> dict[str, Any]:
    """Enable an endpoint that was disabled after failing for 3 days: it receives what happens from
    now on (not what happened while it was disabled); redeliver the deliveries it gave up."""
    return await audited.enable_webhook(session, principal, webhook_id)


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryPage, responses=error_responses(404))
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    principal: MerchantAdmin,
    session: Session,
    limit: PageSize = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first: status, attempts (status code, error), the next
    retry. Failed attempts are retried with growing, randomised delays for 24 hours."""
    return await endpoints.deliveries_page(session, merchant_of(principal), webhook_id, cursor=cursor, limit=limit)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=WebhookDeliveryOut,
    responses=error_responses(404, 409),
)
async def redeliver_webhook(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, principal: MerchantAdmin, session: Session
) -> dict[str, Any]:
    """Send a delivery again soon, with the same `webhook-id` and body (409 `webhook_disabled` while
    the endpoint is disabled)."""
    return await audited.redeliver_webhook(session, principal, webhook_id, delivery_id)
