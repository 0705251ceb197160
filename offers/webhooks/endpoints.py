"""A merchant's webhook endpoints and their deliveries, as the API and the console show them.

Every function takes the merchant from the caller's token: another merchant's endpoint or
delivery is indistinguishable from a missing one. The signing secret is made here and returned
once, by `create_endpoint`; nothing else here reads it (only the worker does, to sign).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound, ValidationFailed
from core.keyset import decode_cursor, page_of
from core.settings import Settings
from core.tenancy import ensure_merchant
from offers.webhooks import EVENT_TYPES, outbox
from offers.webhooks.address import RefusedURL, check_url

MAX_ENDPOINTS_PER_MERCHANT = 20
ATTEMPTS_SHOWN = 10  # per delivery, newest first
SECRET_BYTES = 32

# Never the secret: it is returned once, by create_endpoint.
_ENDPOINT_COLUMNS = """
    id, url, event_types, created_at, failing_since, disabled_at, disabled_reason,
    CASE WHEN disabled_at IS NULL THEN 'enabled' ELSE 'disabled' END AS status
"""
LOCK_MERCHANT_SQL = text(
    "SELECT pg_advisory_xact_lock(hashtext('webhook endpoints'), hashtext(CAST(:merchant AS text)))"
)
COUNT_SQL = text("SELECT count(*) FROM webhook_endpoints WHERE merchant_id = :merchant")
CREATE_SQL = text(f"""
    INSERT INTO webhook_endpoints (merchant_id, url, event_types, secret)
    VALUES (:merchant, :url, CAST(:events AS text[]), :secret)
    RETURNING {_ENDPOINT_COLUMNS}
""")
LIST_SQL = text(f"""
    SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = :merchant ORDER BY created_at, id
""")
GET_SQL = text(f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = :endpoint AND merchant_id = :merchant")
# Deliveries go with it (ON DELETE CASCADE); an attempt in flight then records nothing.
DELETE_SQL = text("DELETE FROM webhook_endpoints WHERE id = :endpoint AND merchant_id = :merchant RETURNING id")
ENABLE_SQL = text(f"""
    -- On an endpoint that is not disabled this changes nothing (its failing clock keeps running).
    UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL,
           failing_since = CASE WHEN disabled_at IS NULL THEN failing_since END,
           receives_since = CASE WHEN disabled_at IS NULL THEN receives_since ELSE now() END
    WHERE id = :endpoint AND merchant_id = :merchant
    RETURNING {_ENDPOINT_COLUMNS}
""")
_DELIVERY_COLUMNS = """
    d.id, d.message_id, m.type, d.status, d.attempts AS attempt_count, d.created_at,
    CASE WHEN d.status = 'pending' THEN greatest(d.next_attempt_at, d.lease_until) END AS next_attempt_at,
    d.retry_until, d.delivered_at, d.last_status_code, d.last_error
"""
_DELIVERIES_SQL = f"""
    SELECT {_DELIVERY_COLUMNS}
    FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
    WHERE d.endpoint_id = :endpoint {{after}}
    ORDER BY d.created_at DESC, d.id DESC
    LIMIT :limit
"""
DELIVERIES_SQL = {
    False: text(_DELIVERIES_SQL.format(after="")),
    True: text(_DELIVERIES_SQL.format(after="AND (d.created_at, d.id) < (:after_at, :after_id)")),
}
ATTEMPTS_SQL = text("""
    SELECT a.delivery_id, a.attempted_at, a.status_code, a.error, a.duration_ms
    FROM unnest(CAST(:deliveries AS uuid[])) AS x(id)
    CROSS JOIN LATERAL (SELECT * FROM webhook_attempts w WHERE w.delivery_id = x.id
                        ORDER BY w.attempted_at DESC, w.id DESC LIMIT :shown) a
""")
# Due now and for another 24 hours, however it ended; a lease in flight keeps its attempt.
REDELIVER_SQL = text(f"""
    UPDATE webhook_deliveries d
    SET status = 'pending', next_attempt_at = now(), retry_until = now() + :retry_for
    FROM webhook_messages m
    WHERE d.id = :delivery AND d.endpoint_id = :endpoint AND m.id = d.message_id
    RETURNING {_DELIVERY_COLUMNS}
""")


def not_found() -> NotFound:
    return NotFound("no such webhook endpoint")


def new_secret() -> str:
    """`whsec_` and 32 random bytes in base64, the form Standard Webhooks libraries take."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _endpoint(row: Any) -> dict[str, Any]:
    found = dict(row)
    found["events"] = list(found.pop("event_types"))
    return found


def checked_url(url: str, settings: Settings) -> str:
    try:
        check_url(url, allow_loopback=settings.webhook_allow_loopback)
    except RefusedURL as exc:
        raise ValidationFailed.for_field("url", "url_not_allowed", f"the URL {exc}") from None
    return url


async def create_endpoint(
    session: AsyncSession, settings: Settings, merchant: uuid.UUID, *, url: str, events: Sequence[str]
) -> dict[str, Any]:
    """A new endpoint with its signing secret (in the result, and never again)."""
    checked_url(url, settings)
    unknown = [kind for kind in events if kind not in EVENT_TYPES]
    if unknown or not events:
        raise ValidationFailed.for_field("events", "unknown_event_type", f"event types are among {EVENT_TYPES}")
    await session.execute(LOCK_MERCHANT_SQL, {"merchant": merchant})  # the count below holds under concurrency
    if (await session.execute(COUNT_SQL, {"merchant": merchant})).scalar_one() >= MAX_ENDPOINTS_PER_MERCHANT:
        raise Conflict(
            f"a merchant has at most {MAX_ENDPOINTS_PER_MERCHANT} webhook endpoints: delete one first",
            code="too_many_webhooks",
        )
    await ensure_merchant(session, merchant)
    secret = new_secret()
    ordered = [kind for kind in EVENT_TYPES if kind in events]
    params = {"merchant": merchant, "url": url, "events": ordered, "secret": secret}
    try:
        row = (await session.execute(CREATE_SQL, params)).mappings().one()
    except DBAPIError as exc:
        # Not chained: SQLAlchemy's message carries the statement's parameters, the secret among them,
        # and the 500 handler logs the traceback.
        raise RuntimeError(f"storing a webhook endpoint failed: {type(exc.orig).__name__}") from None
    return _endpoint(row) | {"secret": secret}


async def list_endpoints(session: AsyncSession, merchant: uuid.UUID) -> list[dict[str, Any]]:
    return [_endpoint(row) for row in (await session.execute(LIST_SQL, {"merchant": merchant})).mappings()]


async def get_endpoint(session: AsyncSession, merchant: uuid.UUID, endpoint: uuid.UUID) -> dict[str, Any]:
    row = (await session.execute(GET_SQL, {"merchant": merchant, "endpoint": endpoint})).mappings().first()
    if row is None:
        raise not_found()
    return _endpoint(row)


async def delete_endpoint(session: AsyncSession, merchant: uuid.UUID, endpoint: uuid.UUID) -> None:
    if (await session.execute(DELETE_SQL, {"merchant": merchant, "endpoint": endpoint})).first() is None:
        raise not_found()


async def enable_endpoint(session: AsyncSession, merchant: uuid.UUID, endpoint: uuid.UUID) -> dict[str, Any]:
    """Enable a disabled endpoint again: it receives what happens from now on. Deliveries given up
    stay so (redeliver the ones wanted); what happened while it was disabled is not sent."""
    row = (await session.execute(ENABLE_SQL, {"merchant": merchant, "endpoint": endpoint})).mappings().first()
    if row is None:
        raise not_found()
    return _endpoint(row)


def _delivery(row: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    found = dict(row)
    found["event_id"] = outbox.webhook_id(found.pop("message_id"))
    return found | {"attempts": attempts}


async def _with_attempts(session: AsyncSession, rows: Sequence[Any]) -> list[dict[str, Any]]:
    attempts: dict[uuid.UUID, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
    if rows:
        params = {"deliveries": list(attempts), "shown": ATTEMPTS_SHOWN}
        for attempt in (await session.execute(ATTEMPTS_SQL, params)).mappings():
            attempts[attempt["delivery_id"]].append({k: v for k, v in attempt.items() if k != "delivery_id"})
    return [_delivery(row, attempts[row["id"]]) for row in rows]


async def deliveries_page(
    session: AsyncSession, merchant: uuid.UUID, endpoint: uuid.UUID, *, cursor: str | None, limit: int
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, each with its latest attempts and its next retry."""
    params: dict[str, Any] = {"endpoint": endpoint, "limit": limit + 1}
    if cursor is not None:  # a malformed cursor is 422 whatever the endpoint
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    await get_endpoint(session, merchant, endpoint)
    rows = (await session.execute(DELIVERIES_SQL[cursor is not None], params)).mappings().all()
    page = page_of(rows, limit, lambda row: (row["created_at"], row["id"]))
    return page | {"items": await _with_attempts(session, page["items"])}


async def redeliver(
    session: AsyncSession, merchant: uuid.UUID, endpoint: uuid.UUID, delivery: uuid.UUID
) -> dict[str, Any]:
    """Send a delivery again now, with the same webhook-id and body, retried for another 24 hours."""
    found = await get_endpoint(session, merchant, endpoint)
    if found["status"] == "disabled":
        raise Conflict("the endpoint is disabled: enable it before redelivering", code="webhook_disabled")
    row = (
        (
            await session.execute(
                REDELIVER_SQL, {"delivery": delivery, "endpoint": endpoint, "retry_for": outbox.RETRY_FOR}
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no such delivery")
    return (await _with_attempts(session, [row]))[0]
