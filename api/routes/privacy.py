"""Erasure of a person's data (offers/privacy/erasure.py): by the person (DELETE /v1/me) or by a
platform admin for a request received elsewhere (POST /v1/privacy/erasures)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import AppUser, PlatformAdmin, RedisDep, Session, SettingsDep
from api.privacy_schemas import ErasureIn, ErasureReceipt
from api.problems import error_responses
from offers import audit
from offers.privacy import erasure

router = APIRouter(prefix="/v1", tags=["privacy"], responses=error_responses(401, 403, 422, 500))


@router.delete("/me", response_model=ErasureReceipt)
async def erase_me(principal: AppUser, session: Session, redis: RedisDep, settings: SettingsDep) -> dict[str, Any]:
    """Erase everything that names you: check-ins (with their positions), unlocks (codes not yet
    redeemed stop working), feedback, your messages and your history of events. What campaigns
    measured stays, under a random placeholder that leads nowhere. Asking again answers the same
    receipt. Checking in afterwards starts afresh, as a new customer."""
    receipt = await erasure.erase_person(session, redis, settings, principal.sub, requested_by="self")
    return receipt.public()


@router.post(
    "/privacy/erasures",
    status_code=201,
    response_model=ErasureReceipt,
    responses={
        200: {"model": ErasureReceipt, "description": "nothing was left to erase: the earlier erasure's receipt"}
    },
)
async def erase_person(
    body: ErasureIn,
    principal: PlatformAdmin,
    session: Session,
    redis: RedisDep,
    settings: SettingsDep,
    response: Response,
) -> dict[str, Any]:
    """Erase a person's data for a request received elsewhere, as DELETE /v1/me does: 201 with the
    receipt, or 200 with the earlier receipt when nothing was left to erase. The audit trail records
    the request by the receipt's id, never the sub."""
    receipt = await erasure.erase_person(session, redis, settings, body.user_sub, requested_by="platform_admin")
    if not receipt.new:
        response.status_code = 200
    await audit.record_change(
        session,
        principal,
        "erasure.completed" if receipt.new else "erasure.repeated",
        receipt.id,
        before=None,
        after=receipt.public(),
    )
    return receipt.public()
