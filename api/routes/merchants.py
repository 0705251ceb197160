"""Who the caller is, for the console and the till: their merchant and their role."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import MerchantReader, Session, merchant_of
from api.problems import error_responses
from api.schemas import MerchantMe
from core.tenancy import Merchant

router = APIRouter(prefix="/v1/merchants", tags=["merchants"], responses=error_responses(401, 403, 422, 429, 500))


@router.get("/me", response_model=MerchantMe)
async def my_merchant(principal: MerchantReader, session: Session) -> dict[str, Any]:
    """The caller's merchant (id and name) and the caller's role. A merchant is provisioned on its
    first write (see the README), so until then its name is null; reading provisions nothing."""
    merchant_id = merchant_of(principal)
    merchant = await session.get(Merchant, merchant_id)
    return {"id": merchant_id, "name": merchant.name if merchant else None, "role": principal.role.value}
