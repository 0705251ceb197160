"""The app user's own data: the export of everything held about them (offers/privacy/export.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import AppUser, Session
from api.export_schemas import Export, ExportedCheckins
from api.problems import error_responses
from offers.privacy import export

router = APIRouter(prefix="/v1/me", tags=["privacy"], responses=error_responses(401, 403, 422, 500))

# Personal data: no shared cache or browser history keeps a copy.
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/export", response_model=Export)
async def export_my_data(principal: AppUser, session: Session, response: Response) -> dict[str, Any]:
    """Everything held about the caller, as of one moment: check-ins (with the position and device
    while they are kept; null after the retention period), the offers unlocked with their codes and
    states, redemptions, feedback, conversations with every message, and each campaign that counted
    the caller with its randomised arm (treatment or control).

    Check-ins come newest first, at most 5,000 here, with their `total`: follow `next_cursor`
    (GET /v1/me/export/checkins?cursor=) for older ones. Everything else is whole."""
    response.headers.update(NO_STORE)
    return await export.export_user(session, principal.sub, now=datetime.now(UTC))


@router.get("/export/checkins", response_model=ExportedCheckins)
async def export_my_checkins(
    principal: AppUser,
    session: Session,
    response: Response,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    limit: Annotated[
        int, Query(ge=1, le=export.CHECKINS_PER_PAGE, description=f"page size, at most {export.CHECKINS_PER_PAGE}")
    ] = export.CHECKINS_PER_PAGE,
) -> dict[str, Any]:
    """The caller's check-ins, newest first, a page at a time: the export's `checkins.next_cursor`
    continues here. A cursor this endpoint did not make is 422 `invalid_cursor`."""
    response.headers.update(NO_STORE)
    return await export.checkins_page(session, principal.sub, cursor=cursor, limit=limit)
