"""The audit trail in the console: the merchant's changes, newest first, a page at a time, each
with who made it, when, what, and what changed (the fields whose value differs before and after).

It reads what GET /v1/audit reads (offers.audit.audit_page). Who: a merchant's admins; marketers
and staff get the 403 page. A target's link shows that resource's changes only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.pages import forbidden, parse_id, render
from api.console.session import ConsoleUser
from api.deps import Session, merchant_of
from core.auth import Role
from core.errors import ValidationFailed
from core.keyset import DEFAULT_LIMIT
from offers import audit

router = APIRouter(prefix="/dashboard", include_in_schema=False)

SHOWN_CHARS = 160  # a long value (a fence, a campaign's offers) is cut: the API has it whole
TARGET_TYPE_CHARS = 40


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None  # None: the field was not there (a creation), or is not any more (a deletion)
    after: str | None


@dataclass(frozen=True)
class Entry:
    at: datetime
    actor_sub: str
    actor_role: str
    action: str
    target_type: str
    target_id: str | None
    changes: list[Change]
    request_id: str | None

    @property
    def kind(self) -> str:
        """created, deleted or changed: how the page shows the values."""
        verb = self.action.rpartition(".")[2]
        return verb if verb in ("created", "deleted") else "changed"


def shown(value: Any) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """The fields that differ, in the resource's own order; every field of a creation or deletion."""
    before, after = before or {}, after or {}
    fields = list(dict.fromkeys([*before, *after]))
    return [
        Change(
            field,
            shown(before[field]) if field in before else None,
            shown(after[field]) if field in after else None,
        )
        for field in fields
        if before.get(field, ...) != after.get(field, ...)
    ]


def entry(row: dict[str, Any]) -> Entry:
    return Entry(
        at=row["at"].astimezone(UTC),
        actor_sub=row["actor_sub"],
        actor_role=row["actor_role"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        changes=changes(row["before"], row["after"]),
        request_id=row["request_id"],
    )


@router.get("/audit")
async def audit_trail(
    request: Request,
    principal: ConsoleUser,
    session: Session,
    cursor: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> Response:
    if principal.role != Role.MERCHANT_ADMIN:
        return forbidden(request, principal)
    # A hand-edited link filters on nothing rather than failing.
    if target_type is not None and not (
        target_type.replace("_", "").isalpha() and len(target_type) <= TARGET_TYPE_CHARS
    ):
        target_type = None
    target = parse_id(target_id)
    merchant = merchant_of(principal)
    filters = {"target_type": target_type, "target_id": None if target is None else str(target)}
    try:
        page = await audit.audit_page(session, merchant, cursor=cursor, limit=DEFAULT_LIMIT, **filters)
    except ValidationFailed:  # a cursor this page did not make: start again from the newest
        page = await audit.audit_page(session, merchant, cursor=None, limit=DEFAULT_LIMIT, **filters)
    return render(
        request,
        "audit.html",
        principal,
        entries=[entry(row) for row in page["items"]],
        next_cursor=page["next_cursor"],
        target_type=filters["target_type"],
        target_id=filters["target_id"],
    )
