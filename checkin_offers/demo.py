"""`checkin-offers seed-demo`: the merchants of `demo_merchants`, their venues and one active campaign
each, written to the database.

The campaigns started a month before the seed, so a back-dated history counts for them, and their
attribution windows are short (a day), so a few days of history already close some windows and the
stats show a measured effect. The merchants have fixed ids, so a second run finds them and changes
nothing, and tokens printed once stay valid after the database is re-seeded.

`seed-demo --with-activity` (what `make run` does) then fills a demo without check-ins with a few
days of history: it starts the real app in this process (uvicorn on a free loopback port, in a
thread), accepting fixes as old as the history, runs `checkin-offers simulate` against it through
the SDK, and stops it. Only this process's settings are widened; the server that `make run` serves
afterwards is a separate process with the normal limits. A demo that has any check-in is left as
it is, so running it again adds nothing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from checkin_offers.demo_merchants import COFFEE, MERCHANTS, DemoMerchant
from checkin_offers.simulate import Options, required_fix_age_s, simulate
from core.auth import mint_token
from core.db import get_engine, get_sessionmaker
from core.settings import get_settings
from core.tenancy import Merchant
from geo.geofence import parse_geofence
from geo.venues import create_venue
from offers.campaigns import add_offer, create_campaign, transition
from offers.rules import Rule, Schedule

CAMPAIGN_STARTED_DAYS_AGO = 30
CAMPAIGN_DAYS = 365
TOKEN_TTL_S = 24 * 3600
ACTIVITY_DAYS = 3
ACTIVITY_USERS = 200
SERVER_START_TIMEOUT_S = 15
_RULE = TypeAdapter(Rule)


async def _seed_merchant(session: AsyncSession, demo: DemoMerchant, now: datetime) -> None:
    # create_merchant draws a random id; the demo's is fixed (see the module docstring).
    session.add(Merchant(id=demo.id, name=demo.name))
    await session.flush()
    venue_ids = []
    for venue in demo.venues:
        created = await create_venue(
            session,
            demo.id,
            name=venue.name,
            timezone=venue.timezone,
            address=venue.address,
            geofence=parse_geofence(venue.geofence),
        )
        venue_ids.append(created.id)
    starts_at = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=CAMPAIGN_STARTED_DAYS_AGO)
    campaign = await create_campaign(
        session,
        demo.id,
        name=demo.campaign,
        venue_ids=venue_ids,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(days=CAMPAIGN_DAYS),
        holdout_percent=demo.holdout_percent,
        attribution_days=demo.attribution_days,
    )
    for offer in demo.offers:
        schedule = Schedule.model_validate(offer["schedule"]) if offer["schedule"] else None
        await add_offer(
            session,
            demo.id,
            campaign.id,
            **{**offer, "rule": _RULE.validate_python(offer["rule"]), "schedule": schedule},
        )
    await transition(session, demo.id, campaign.id, "activate")


def _describe(demo: DemoMerchant) -> str:
    venues = ", ".join(
        f"{v.name.removeprefix(demo.name).strip()} ({v.timezone.split('/')[1]}, {v.geofence['type'].lower()})"
        for v in demo.venues
    )
    rules = ", ".join(o["rule"]["type"] + (" + schedule" if o["schedule"] else "") for o in demo.offers)
    return (
        f"  {demo.name} ({demo.id}): {venues}\n"
        f"    campaign '{demo.campaign}', active, holdout {demo.holdout_percent}%, "
        f"attribution {demo.attribution_days} day(s): {rules}"
    )


def _try_it(coffee_campaign_id: uuid.UUID | None, base_url: str) -> str:
    settings = get_settings()
    try:
        app_token = mint_token(settings, sub="demo-user-1", role="app_user", ttl_s=TOKEN_TTL_S)
        admin_token = mint_token(
            settings, sub="demo-admin", role="merchant_admin", merchant_id=str(COFFEE.id), ttl_s=TOKEN_TTL_S
        )
    except RuntimeError as exc:
        return f"(no tokens printed: {exc})"
    lon, lat = COFFEE.venues[0].geofence["center"]
    stats = (
        f'  curl -s {base_url}/v1/campaigns/{coffee_campaign_id}/stats -H "Authorization: Bearer $ADMIN_TOKEN"\n'
        if coffee_campaign_id
        else ""
    )
    return f"""Try it (tokens valid 24 h; more with `checkin-offers token`):
  export APP_TOKEN={app_token}
  export ADMIN_TOKEN={admin_token}   # merchant_admin of {COFFEE.name}
  curl -s {base_url}/v1/checkins -H "Authorization: Bearer $APP_TOKEN" \\
    -H "Idempotency-Key: demo-$(date +%s)-$RANDOM" -H 'Content-Type: application/json' \\
    -d '{{"lat": {lat}, "lon": {lon}, "accuracy_m": 12, "observed_at": "'$(date -u +%Y-%m-%dT%H:%M:%SZ)'"}}'
  curl -s {base_url}/v1/campaigns -H "Authorization: Bearer $ADMIN_TOKEN"
{stats}"""


DEMO_HAS_CHECKINS_SQL = text("""
    SELECT EXISTS (SELECT 1 FROM checkins c JOIN venues v ON v.id = c.venue_id WHERE v.merchant_id = ANY(:ids))
""")
COFFEE_CAMPAIGN_SQL = text("SELECT id FROM campaigns WHERE merchant_id = :merchant AND name = :name")


@dataclass(frozen=True)
class Seeded:
    created: list[DemoMerchant]
    has_checkins: bool  # any check-in at a demo venue, from earlier activity or real use
    coffee_campaign_id: uuid.UUID | None


async def _seed() -> Seeded:
    """Create the demo merchants that are missing, in one transaction."""
    ids = [demo.id for demo in MERCHANTS]
    try:
        async with get_sessionmaker()() as session, session.begin():
            existing = set(await session.scalars(select(Merchant.id).where(Merchant.id.in_(ids))))
            missing = [demo for demo in MERCHANTS if demo.id not in existing]
            now = datetime.now(UTC)
            for demo in missing:
                await _seed_merchant(session, demo, now)
            has_checkins = bool(await session.scalar(DEMO_HAS_CHECKINS_SQL, {"ids": ids}))
            coffee_campaign_id = await session.scalar(
                COFFEE_CAMPAIGN_SQL, {"merchant": COFFEE.id, "name": COFFEE.campaign}
            )
    finally:
        # The event loop ends with this call: close the pool while it still runs.
        await get_engine().dispose()
    return Seeded(missing, has_checkins, coffee_campaign_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def history_server(history_days: int) -> Iterator[str]:
    """The real app on a free loopback port, in a thread of this process, accepting fixes as old as
    a history of `history_days` days; yields its base URL. The app reads this process's settings
    singleton on every request, so the wider limit is set there, for as long as the server runs."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    normal_max_fix_age_s = settings.max_fix_age_s
    settings.max_fix_age_s = max(normal_max_fix_age_s, required_fix_age_s(history_days))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, loop="asyncio", log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="demo-history-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the in-process server for the demo's history did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_TIMEOUT_S)
        settings.max_fix_age_s = normal_max_fix_age_s


def add_activity(history_days: int = ACTIVITY_DAYS, users: int = ACTIVITY_USERS) -> None:
    """Simulate `history_days` days of `users` users through the SDK against an in-process server."""
    print(
        f"filling the demo with {history_days} days of activity by {users} simulated users "
        "(checkin-offers simulate, against this process's own server):"
    )
    with history_server(history_days) as base_url:
        asyncio.run(simulate(Options(base_url=base_url, users=users, history_days=history_days)))


def seed_demo(*, with_activity: bool = False, base_url: str = "http://127.0.0.1:8000") -> None:
    """Create the demo merchants that are missing; with_activity: also a few days of history when the
    demo has no check-ins yet. Prints what was done, and how to try the service served at base_url."""
    seeded = asyncio.run(_seed())
    if seeded.created:
        print("demo data created:")
        print("\n".join(_describe(demo) for demo in seeded.created))
    else:
        print("demo data already present; nothing changed")
    if with_activity and seeded.has_checkins:
        print("the demo already has check-ins; no activity added")
    elif with_activity:
        add_activity()
    print(_try_it(seeded.coffee_campaign_id, base_url), end="")
