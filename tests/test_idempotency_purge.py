"""Idempotency keys live their time to live, then go."""

import asyncio
import uuid

from core.db import make_engine
from core.idempotency import purge_expired_keys


def purge_now(settings) -> int:
    """One purge, as the service runs it every few minutes: the keys it deleted."""

    async def purge() -> int:
        engine = make_engine(settings.database_url, 1)
        try:
            return await purge_expired_keys(engine, settings.idempotency_ttl_s)
        finally:
            await engine.dispose()

    return asyncio.run(purge())


def test_keys_older_than_the_ttl_are_purged_and_younger_ones_stay(world, db, settings):
    user = world.user(sub := f"purge-{uuid.uuid4().hex[:8]}")
    m = world.merchant()
    venue = world.venue(m)
    old_key, fresh_key = str(uuid.uuid4()), str(uuid.uuid4())
    assert world.checkin(user, *venue["center"], key=old_key).status_code == 201
    assert world.checkin(user, *venue["center"], key=fresh_key).status_code == 201
    db.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' WHERE scope = %s AND key = %s",
        (sub, old_key),
    )

    assert purge_now(settings) >= 1
    keys = {r["key"] for r in db.execute("SELECT key FROM idempotency_keys WHERE scope = %s", (sub,))}
    assert keys == {fresh_key}
