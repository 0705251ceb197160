"""A campaign's stats: funnel, measured effect, breakdowns; JSON or CSV."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from api.deps import Session, StatsReader, merchant_of
from api.problems import error_responses
from offers.stats import campaign_stats, stats_csv

router = APIRouter(prefix="/v1", tags=["stats"], responses=error_responses(401, 403, 404, 422, 500))


@router.get(
    "/campaigns/{campaign_id}/stats", response_model=dict[str, Any], responses={200: {"content": {"text/csv": {}}}}
)
async def get_stats(
    campaign_id: uuid.UUID,
    principal: StatsReader,
    session: Session,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> dict[str, Any] | PlainTextResponse:
    """Funnel, intention-to-treat effect with 95% intervals, sample-ratio check, by day and venue."""
    stats = await campaign_stats(session, merchant_of(principal), campaign_id, datetime.now(UTC).date())
    if format == "csv":
        return PlainTextResponse(
            stats_csv(stats),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
        )
    return stats
