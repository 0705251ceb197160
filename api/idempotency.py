"""The Idempotency-Key header, shared by the check-in and redemption routes.

The header is read by hand rather than declared as a FastAPI parameter, so that a missing
required key is the documented 400 `idempotency_key_required`, not a generic 422; the
OpenAPI entry is added with `key_parameter`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from core.errors import BadRequest, ValidationFailed

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")


def key_parameter(required: bool, purpose: str) -> dict[str, Any]:
    """`openapi_extra` stating the header as the contract has it."""
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": required,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN.pattern},
                "description": f"1-200 printable ASCII characters, e.g. a UUID; {purpose}",
            }
        ]
    }


def optional_key(request: Request) -> str | None:
    """The request's key, or None when it sent none; a malformed key is 422."""
    key = request.headers.get("idempotency-key")
    if key is not None and not KEY_PATTERN.match(key):
        raise ValidationFailed.for_field(
            "Idempotency-Key", "invalid_idempotency_key", "1-200 printable ASCII characters"
        )
    return key


def required_key(request: Request, why: str) -> str:
    """The request's key; a missing one is 400 `idempotency_key_required` explaining `why`."""
    key = optional_key(request)
    if key is None:
        raise BadRequest(f"send an Idempotency-Key header (e.g. a UUID) {why}", code="idempotency_key_required")
    return key
