"""The audit trail: who changed what on the merchant side, when, and the values before and after.

A row is written in the caller's transaction (record_change), so a change and its audit row
commit together or not at all; the table is append-only (a trigger refuses update, delete and
truncate). before/after are the resource's public representation, the API's response shape,
with secrets redacted: a webhook's signing secret is never stored here.

Actions have stable dotted names, `<target_type>.<verb>` (venue.created, campaign.activated,
redemption.voided, webhook.deleted): clients filter on them. api/audited.py records every
merchant-side change the API and the console make; a void writes its row in its own statement
(offers.redemption.VOID_SQL), and an erasure request is recorded with no merchant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from core.keyset import decode_cursor, page_of
from core.logs import REQUEST_ID

REDACTED = "[redacted]"
# Keys whose values never enter the audit, at any depth of before/after.
SECRET_KEYS = frozenset({"secret", "signing_secret", "token", "password", "code"})

INSERT_AUDIT_ROW = text(
    """
    INSERT INTO audit_log (merchant_id, actor_sub, actor_role, action, target_type, target_id, before, after,
                           request_id)
    VALUES (:merchant, :sub, :role, :action, :target_type, :target_id,
            CAST(:before AS jsonb), CAST(:after AS jsonb), :request_id)
    """
)

AUDIT_PAGE = text(
    """
    SELECT id, at, actor_sub, actor_role, action, target_type, target_id, before, after, request_id
    FROM audit_log
    WHERE merchant_id = :merchant
      AND (CAST(:target_type AS text) IS NULL OR target_type = :target_type)
      AND (CAST(:target_id AS text) IS NULL OR target_id = :target_id)
      AND (CAST(:before_at AS timestamptz) IS NULL OR (at, id) < (:before_at, :before_id))
    ORDER BY at DESC, id DESC
    LIMIT :limit
    """
)


def redacted(value: Any) -> Any:
    """value with every secret-named key's value replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if k in SECRET_KEYS and v is not None else redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


def public(model: BaseModel | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A response model (or a dict of one) as the JSON the API would answer, ready for before/after."""
    if model is None:
        return None
    if isinstance(model, BaseModel):
        return dict(model.model_dump(mode="json"))
    return dict(to_jsonable_python(dict(model)))  # times as ISO 8601, ids as text: as the API writes them


def _json(values: Mapping[str, Any] | BaseModel | None) -> str | None:
    document = public(values)
    return None if document is None else json.dumps(redacted(document))


async def record_change(
    session: AsyncSession,
    principal: Principal,
    action: str,
    target_id: str | uuid.UUID | None,
    *,
    before: Mapping[str, Any] | BaseModel | None,
    after: Mapping[str, Any] | BaseModel | None,
    merchant_id: uuid.UUID | None = None,
) -> None:
    """One audit row, in the caller's transaction (flushed, not committed: the caller commits both).
    The target's type is the action's first part (`campaign` of `campaign.activated`).

    merchant_id defaults to the principal's merchant; a platform admin's action may have none.
    """
    await session.execute(
        INSERT_AUDIT_ROW,
        {
            "merchant": merchant_id if merchant_id is not None else principal.merchant_id,
            "sub": principal.sub,
            "role": principal.role.value,
            "action": action,
            "target_type": action.partition(".")[0],
            "target_id": None if target_id is None else str(target_id),
            "before": _json(before),
            "after": _json(after),
            "request_id": REQUEST_ID.get(),
        },
    )


async def audit_page(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    target_type: str | None = None,
    target_id: str | None = None,
) -> dict[str, Any]:
    """The merchant's audit rows, newest first, a page at a time ({"items", "next_cursor"});
    a cursor this did not make is 422 `invalid_cursor`."""
    before_at: datetime | None = None
    before_id: uuid.UUID | None = None
    if cursor is not None:
        before_at, before_id = decode_cursor(cursor)
    params = {
        "merchant": merchant_id,
        "target_type": target_type,
        "target_id": target_id,
        "before_at": before_at,
        "before_id": before_id,
        "limit": limit + 1,
    }
    rows = [dict(row) for row in (await session.execute(AUDIT_PAGE, params)).mappings()]
    return page_of(rows, limit, lambda row: (row["at"], row["id"]))
