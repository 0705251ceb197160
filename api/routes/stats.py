"""A campaign's stats: funnel, measured effect, breakdowns; JSON or CSV."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import Session, StatsReader, merchant_of
from api.problems import error_responses
from offers.power import DEFAULT_LIFT_PP, power_for_campaign
from offers.stats import campaign_stats, stats_csv
from offers.stats_schema import CampaignStats, PowerPlan

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


@router.get("/campaigns/{campaign_id}/power", response_model=PowerPlan, responses=error_responses(409))
async def get_power(
    campaign_id: uuid.UUID,
    principal: StatsReader,
    session: Session,
    lift_pp: Annotated[
        float, Query(ge=0.1, le=50, description="absolute lift to detect, in percentage points (0.1 to 50)")
    ] = DEFAULT_LIFT_PP,
) -> dict[str, Any]:
    """Users per arm and days needed to detect lift_pp (default 2 percentage points) at 80% power, from the
    campaign venues' accepted check-ins over the last 28 days and the holdout share. For a draft, active or
    paused campaign; an ended one is 409 `campaign_ended` (its stats say what it did)."""
    plan = await power_for_campaign(session, merchant_of(principal), campaign_id, lift_pp, datetime.now(UTC).date())
    return {
        "users_per_arm": {"treatment": plan.users_treatment, "control": plan.users_control},
        "days": plan.days,
        "daily_new_users": plan.daily_new_users,
        "baseline_return_rate": plan.baseline_return_rate,
        "lift_pp": plan.lift_pp,
    }
