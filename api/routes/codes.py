"""The till's look-up: what a code unlocks and whether it can be redeemed, before redeeming it."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import HotConnection, RedisDep, SettingsDep, TillStaff, merchant_of
from api.problems import error_responses
from api.schemas import CodeOut
from offers import redemption

router = APIRouter(prefix="/v1/codes", tags=["redemptions"], responses=error_responses(401, 403, 422, 429, 500))

# A code in a URL path reaches access logs (`serve --access-log`): they show its last 4 characters only.
_CODE_IN_PATH = re.compile(r"(/v1/codes/)[^?/]*?([^?/]{0,4})(?=[?/]|$)")


class _MaskCodes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _CODE_IN_PATH.sub(r"\1****\2", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


logging.getLogger("uvicorn.access").addFilter(_MaskCodes())


@router.get("/{code}", response_model=CodeOut, responses=error_responses(404))
async def look_up_code(
    code: Annotated[str, Path(max_length=32, description="as typed: case, spaces and O/0, I/L/1 do not matter")],
    venue_id: Annotated[uuid.UUID, Query(description="the venue of the till")],
    principal: TillStaff,
    conn: HotConnection,
    redis: RedisDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """The code's offer (title, description, terms) and state (`active`, `redeemed`, `expired`),
    changing nothing. It answers as a redemption would: a code that is not this merchant's
    (unknown, another merchant's or malformed) is 404 `not_found` and counts as a failed attempt
    like a failed redemption: after a few, this staff member waits a growing delay, and the
    merchant as a whole has a much higher ceiling (429 with `Retry-After`, the remaining wait in
    seconds); a colleague's look-ups are not held back by one person's misses. A code of this
    merchant whose campaign does not run at the venue is 422 `venue_not_in_campaign`."""
    return await redemption.look_up_code(
        conn,
        redis,
        settings,
        merchant=merchant_of(principal),
        staff=principal.sub,
        raw_code=code,
        venue=venue_id,
    )
