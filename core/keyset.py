"""Keyset pages, newest first, on (a time, an id): the cursor is the position of the last row
shown, so rows added while a client pages never repeat or shift what it has already seen.
The cursor is base64url-encoded so that clients treat it as opaque and the encoding can change.

Shared by the wallet, the till's redemptions and the check-ins under review.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.errors import ValidationFailed

Row = TypeVar("Row")
DEFAULT_LIMIT = 50  # the page size of every list (README, "Pages")
MAX_LIMIT = 100


def after_cursor(at: str, row_id: str) -> str:
    """The SQL condition for the rows after the cursor (:after_at, :after_id), on the columns `at` and
    `row_id`. The plain `at <=` repeats the row comparison so that an index on the time can start
    its scan at the cursor instead of at the newest row."""
    return f"AND {at} <= :after_at AND ({at}, {row_id}) < (:after_at, :after_id)"


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; anything encode_cursor did not make is 422 `invalid_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        text_at, _, row_id = raw.partition("|")
        at = datetime.fromisoformat(text_at)
        if at.tzinfo is None:
            raise ValueError("a naive time")
        # In UTC here: an offset that moves year 1 or 9999 out of range fails now, not in the driver.
        return at.astimezone(UTC), uuid.UUID(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ValidationFailed.for_field(
            "cursor", "invalid_cursor", "pass the next_cursor of the previous page"
        ) from None


def page_of(rows: Sequence[Row], limit: int, position: Callable[[Row], tuple[datetime, uuid.UUID]]) -> dict[str, Any]:
    """{"items", "next_cursor"} from up to limit + 1 rows (the extra one says a next page exists)."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(*position(items[-1])) if more else None}
