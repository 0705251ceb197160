"""Idempotency keys: written by the check-in and redemption functions in the transaction of
the result they guard, and purged here once older than their time to live (48 h by default,
well past any client's retries). Check-in keys live in idempotency_keys, scoped by the user's
sub; redemption keys in redemption_keys, scoped by merchant and staff member in columns of their
own, so the two can never meet whatever a sub spells."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import ValidationFailed

log = logging.getLogger(__name__)

PURGE_EVERY_S = 600


def key_reused(what: str) -> ValidationFailed:
    """The same key with a different body: the client's bug, never a replay."""
    return ValidationFailed(
        "this Idempotency-Key was used with a different request body",
        code="idempotency_key_reused",
        errors=[
            {"field": "Idempotency-Key", "code": "idempotency_key_reused", "message": f"use a new key for a new {what}"}
        ],
    )


# Small batches keep each delete short, so the hot paths never queue behind it.
KEY_TABLES = ("idempotency_keys", "redemption_keys")
PURGE_SQL = {
    table: text(f"""
        DELETE FROM {table} WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM {table}
            WHERE created_at < now() - make_interval(secs => :ttl_s)
            LIMIT 5000))
    """)
    for table in KEY_TABLES
}


async def purge_expired_keys(engine: AsyncEngine, ttl_s: int) -> int:
    purged = 0
    for table in KEY_TABLES:
        while True:
            async with engine.begin() as conn:
                deleted = (await conn.execute(PURGE_SQL[table], {"ttl_s": ttl_s})).rowcount
            purged += deleted
            if deleted < 5000:
                break
    return purged


async def purge_forever(engine: AsyncEngine, ttl_s: int) -> None:
    """Runs in every API process; the deletes are idempotent, so several at once are harmless."""
    while True:
        try:
            purged = await purge_expired_keys(engine, ttl_s)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except Exception:  # the database may be briefly away; try again next time
            log.exception("idempotency key purge failed")
        await asyncio.sleep(PURGE_EVERY_S)
