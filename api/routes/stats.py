"""A campaign's stats: funnel, measured effect, breakdowns; JSON or CSV."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import Session, StatsReader, merchant_of
from api.problems import error_responses
from offers.stats import campaign_stats, stats_csv
from offers.stats_schema import CampaignStats

router = APIRouter(prefix="/v1", tags=["stats"], responses=error_responses(401, 403, 404, 422, 500))

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stats (JSON), or with format=csv a spreadsheet: UTF-8 with a byte-order mark; "
        "the effect summary (return-visit rate per arm in percent, absolute lift in percentage points, "
        "relative lift in percent, 95% intervals, p-value), a blank line, then the by-day and by-venue rows.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def csv_response(stats: dict[str, Any], campaign_id: uuid.UUID) -> Response:
    """The stats as a CSV download (the API's and the console's)."""
    return Response(
        stats_csv(stats).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


@router.get("/campaigns/{campaign_id}/stats", response_model=CampaignStats, responses=CSV_RESPONSE)
async def get_stats(
    campaign_id: uuid.UUID,
    principal: StatsReader,
    session: Session,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> dict[str, Any] | Response:
    """Funnel, intention-to-treat effect with 95% intervals, sample-ratio check, by day and venue."""
    stats = await campaign_stats(session, merchant_of(principal), campaign_id, datetime.now(UTC).date())
    if format == "csv":
        return csv_response(stats, campaign_id)
    return stats
