"""The audit trail of merchant-side changes (offers/audit.py): read by the merchant's admins."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.audit_schemas import AuditPage
from api.deps import MerchantAdmin, Session, merchant_of
from api.problems import error_responses
from core.keyset import DEFAULT_LIMIT, MAX_LIMIT
from offers import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=error_responses(401, 403, 422, 429, 500))


@router.get("", response_model=AuditPage)
async def audit_trail(
    principal: MerchantAdmin,
    session: Session,
    target_type: Annotated[
        str | None, Query(pattern="^[a-z_]{1,40}$", description="only changes of this kind of resource: venue, ...")
    ] = None,
    target_id: Annotated[uuid.UUID | None, Query(description="only changes of this resource")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Every change made on the merchant's side (venues, campaigns, offers, voids, webhooks ...),
    newest first, a page at a time: who (token subject and role), when, what (`action`, the target)
    and the resource before and after, in the API's response shape with secrets redacted. The
    merchant's own entries only; append-only, never changed or deleted. A cursor this endpoint did
    not make is 422 `invalid_cursor`."""
    return await audit.audit_page(
        session,
        merchant_of(principal),
        cursor=cursor,
        limit=limit,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
    )
