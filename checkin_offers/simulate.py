"""Realistic traffic through the SDK against a running service: `checkin-offers simulate`.

Run it against a server seeded with `checkin-offers seed-demo`, with the server's CHECKIN_JWT_SECRET
in the environment (the simulator mints its users' and staff's tokens with `core.auth.mint_token`).
It finds the demo merchants' venues and active campaigns through the merchant API, then drives all
app and till traffic through `mobile_sdk.AsyncCheckinOffersClient`.

Time. The server judges every fix against its own clock (stale after CHECKIN_MAX_FIX_AGE_S, "future"
beyond CHECKIN_MAX_FUTURE_SKEW_S), so days of activity cannot be back-dated through HTTP, and the
simulator does not try: it runs in compressed real time. One simulated day lasts `--day-seconds`
real seconds (default 20: a speedup of 4320), and every fix carries the real moment it was taken.
The server's limits that are measured in time must be compressed the same way, or a walk across
town looks like teleporting; start the server for a simulation with (the simulator prints the
exact line for its speedup):

    CHECKIN_MAX_SPEED_KMH=<250 x speedup> CHECKIN_CHECKIN_COOLDOWN_S=0 CHECKIN_CHECKIN_RATE_PER_MINUTE=1000

Against a server with production limits the run still works and still counts exactly; legitimate
users are then rejected as too_fast or too_frequent much more often. What stays on the real clock:
fix age (a check-in queued offline is replayed a few simulated hours later, which is seconds of
real time, so it is accepted), offer schedules (the happy hour unlocks only if the run happens
during it), the windows of offer rules (a group's 30 minutes span a whole short run, so everyone at
a bakery counts as one group), code expiry, the stats' days (`by_day` shows the real day) and
attribution windows (so the stats' effect block stays "collecting"; the simulator reports its own
return rates by arm instead). `--seed` fixes the population and its plans; the order in which
concurrent requests reach the server, and so the exact counts, vary from run to run.

Who does what. Users live in Oslo or Copenhagen. A regular user makes a first visit to a random
venue of their city, later wanders to the other merchant's venues there, and returns to the first
merchant with a known probability: `--return-rate` in the control arm, plus `--lift` in the
treatment arm (the offer's true effect). Fixes have GPS noise and varying accuracy; some are taken
too early, still down the street, or indoors with a poor fix; after such a rejection the user tries
once more at the door. A share of users (`--offline-share`) have flaky connectivity: some of their
check-ins go to the SDK's offline queue (`checkin_or_queue` while the network is down) and are sent
by `replay_queue` when it is back, with their original observed_at. Spoofers (`--spoofers`) check
in at home, then minutes later in the other city, 480 km away: the server should answer too_fast.
Staff redeem a share (`--redeem-share`) of unlocked codes some minutes after the unlock.

Arms. The API never tells an app its arm, so the simulator infers it, per user and campaign, from
the user's first accepted check-in at one of the campaign's venues (their exposure): treatment if
that check-in unlocked one of the campaign's offers, control if it unlocked none. This is exact
when the campaign has an unscheduled every_checkin or first_checkin offer with budget left, as
both demo campaigns do: such an offer unlocks on every treatment user's first check-in.

Counting. Each server answer is counted for the campaigns running at the venue it names
(a rejection names the venue it was matched to or found nearest), exactly as the server's
counters do. Unlocks are counted from the users' wallets at the end (a group offer unlocks for
the other members of the group into their wallets, not into the response). The summary shows
these counts next to the change in GET /v1/campaigns/{id}/stats over the run; `simulate` returns
them (`Report`) so tests can compare.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import shapely
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from checkin_offers.demo import MERCHANTS
from core.auth import mint_token
from core.settings import get_settings
from mobile_sdk import (
    ApiError,
    AsyncCheckinOffersClient,
    CheckinResult,
    OfflineQueue,
    Queued,
    TransportError,
)
from offers.stats_math import newcombe_diff_interval

T = TypeVar("T")

DAY_S = 86_400.0
CITIES = {"Europe/Oslo": "Oslo", "Europe/Copenhagen": "Copenhagen"}
PRODUCTION_MAX_SPEED_KMH = 250.0
WANDER_PER_DAY = 0.4  # chance a regular user visits the other merchant on a given day
OFFLINE_VISIT_SHARE = 0.4  # of a flaky user's visits, made while offline
RETRYABLE_REJECTIONS = {"outside_geofence", "accuracy_too_low", "venue_mismatch"}
SDK_ATTEMPTS = 3  # an offline phone gives up quickly and queues; backoff waits are real seconds


@dataclass(frozen=True)
class Options:
    base_url: str = "http://127.0.0.1:8000"
    users: int = 200
    days: int = 3
    seed: int = 7
    day_seconds: float = 20.0
    spoofers: int | None = None  # default: one user in twenty
    lift: float = 0.15
    return_rate: float = 0.30
    offline_share: float = 0.15
    redeem_share: float = 0.6
    concurrency: int = 16

    @property
    def speedup(self) -> float:
        return DAY_S / self.day_seconds

    @property
    def spoofer_count(self) -> int:
        return self.users // 20 if self.spoofers is None else min(self.spoofers, self.users)


def server_settings(options: Options) -> dict[str, str]:
    """The server's time-based limits compressed by the simulation's speedup (see the docstring)."""
    return {
        "CHECKIN_MAX_SPEED_KMH": f"{PRODUCTION_MAX_SPEED_KMH * options.speedup:.0f}",
        "CHECKIN_CHECKIN_COOLDOWN_S": "0",
        "CHECKIN_CHECKIN_RATE_PER_MINUTE": "1000",
    }


# The demo catalogue, as the merchant API shows it.

@dataclass(frozen=True)
class SimVenue:
    id: str
    name: str
    merchant_id: str
    city: str
    door: tuple[float, float]  # lon, lat: where a user stands to check in


@dataclass(frozen=True)
class SimCampaign:
    id: str
    name: str
    merchant_id: str
    venue_ids: frozenset[str]
    offer_ids: frozenset[str]


@dataclass(frozen=True)
class Catalogue:
    venues: tuple[SimVenue, ...]
    campaigns: tuple[SimCampaign, ...]

    def in_city(self, city: str, *, merchant_id: str | None = None, exclude_merchant: str | None = None
                ) -> list[SimVenue]:
        return [v for v in self.venues if v.city == city and merchant_id in (None, v.merchant_id)
                and v.merchant_id != exclude_merchant]

    def campaigns_at(self, venue_id: str) -> list[SimCampaign]:
        return [c for c in self.campaigns if venue_id in c.venue_ids]

    def campaign_of_offer(self, offer_id: str) -> SimCampaign | None:
        return next((c for c in self.campaigns if offer_id in c.offer_ids), None)


def _door(geofence: dict[str, Any]) -> tuple[float, float]:
    if geofence["type"] == "Circle":
        lon, lat = geofence["center"]
        return lon, lat
    point = shapely.geometry.shape(geofence).representative_point()
    return point.x, point.y


async def _pages(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[dict]:
    items, cursor = [], None
    while True:
        response = await http.get(path, params={"limit": 100, **({"cursor": cursor} if cursor else {})},
                                  headers=headers)
        response.raise_for_status()
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def load_catalogue(base_url: str, admin_tokens: dict[str, str]) -> Catalogue:
    """Venues and active campaigns of the demo merchants. The SDK is the app's and the till's
    client; reading a merchant's setup is a back-office call, made here with plain httpx."""
    venues, campaigns = [], []
    now = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for merchant_id, token in admin_tokens.items():
            headers = {"Authorization": f"Bearer {token}"}
            try:
                merchant_venues = await _pages(http, "/v1/venues", headers)
                merchant_campaigns = await _pages(http, "/v1/campaigns", headers)
            except httpx.TransportError as exc:
                raise RuntimeError(f"cannot reach {base_url} ({exc!r}): is the server running?") from exc
            except httpx.HTTPStatusError as exc:
                raise RuntimeError(f"{exc.response.status_code} from {exc.request.url}: {exc.response.text} "
                                   "(the simulator needs the server's CHECKIN_JWT_SECRET and demo merchants)") from exc
            venues += [SimVenue(v["id"], v["name"], merchant_id, CITIES[v["timezone"]], _door(v["geofence"]))
                       for v in merchant_venues if v["timezone"] in CITIES]
            campaigns += [SimCampaign(c["id"], c["name"], merchant_id, frozenset(c["venue_ids"]),
                                      frozenset(o["id"] for o in c["offers"]))
                          for c in merchant_campaigns
                          if c["status"] == "active"
                          and datetime.fromisoformat(c["starts_at"]) <= now < datetime.fromisoformat(c["ends_at"])]
    if not venues or not campaigns:
        raise RuntimeError("no demo venues or active campaigns found: run `checkin-offers seed-demo` against "
                           "the server's database first")
    return Catalogue(tuple(venues), tuple(campaigns))


# What the simulator counts.

@dataclass
class CampaignTally:
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    exposed: Counter[str] = field(default_factory=Counter)  # by arm
    unlocks: int = 0  # from the wallets
    redemptions: int = 0
    home_users: Counter[str] = field(default_factory=Counter)  # by arm: users whose first visit was here
    returned_users: Counter[str] = field(default_factory=Counter)

    def comparable(self) -> dict[str, int]:
        return funnel_metrics(self.accepted, self.rejected, self.exposed, self.unlocks, self.redemptions)


def funnel_metrics(accepted: int, rejected: dict[str, int], exposed: dict[str, int], unlocks: int,
                   redemptions: int) -> dict[str, int]:
    """The numbers both sides count, under one set of names."""
    metrics = {"check-ins accepted": accepted, "exposed: treatment": exposed.get("treatment", 0),
               "exposed: control": exposed.get("control", 0), "unlocks": unlocks, "redemptions": redemptions}
    metrics |= {f"rejected: {reason}": n for reason, n in sorted(rejected.items()) if n}
    return metrics


def stats_metrics(funnel: dict[str, Any]) -> dict[str, int]:
    return funnel_metrics(funnel["checkins_accepted"], funnel["rejected_by_reason"],
                          {"treatment": funnel["exposed_treatment"], "control": funnel["exposed_control"]},
                          funnel["unlocks"], funnel["redemptions"])


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {name: after.get(name, 0) - before.get(name, 0) for name in after.keys() | before.keys()}
    return {name: n for name, n in changed.items() if n or not name.startswith("rejected: ")}


@dataclass
class Traffic:
    checkins_sent: int = 0
    answered: Counter[str] = field(default_factory=Counter)  # accepted, or the rejection reason
    retries_at_the_door: int = 0
    queued: int = 0
    replayed: int = 0
    unreachable: int = 0
    api_errors: Counter[str] = field(default_factory=Counter)
    unlocked_in_responses: int = 0
    redemption_attempts: int = 0
    spoofers: int = 0
    spoofers_caught: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class CampaignReport:
    id: str
    name: str
    simulated: dict[str, int]
    stats: dict[str, int]  # the change in the stats endpoint's funnel over the run
    home_users: dict[str, int]
    returned_users: dict[str, int]

    @property
    def agrees(self) -> bool:
        return self.simulated == self.stats


@dataclass(frozen=True)
class Report:
    options: Options
    traffic: Traffic
    campaigns: list[CampaignReport]


# Time and network.

class Clock:
    """Simulated seconds since the start, running `speedup` times faster than real time."""

    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    def now(self) -> float:
        return (self._loop.time() - self._start) * self.speedup

    async def sleep_until(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, (simulated_s - self.now()) / self.speedup))


class FlakyNetwork(httpx.AsyncBaseTransport):
    """One phone's network: fails to connect while `offline`, else uses the shared connection pool."""

    def __init__(self, pool: httpx.AsyncBaseTransport) -> None:
        self.pool = pool
        self.offline = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.offline:
            raise httpx.ConnectError("no network", request=request)
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool is shared and closed by the simulation."""


# Users.

@dataclass
class SimUser:
    sub: str
    city: str
    spoofer: bool
    rng: random.Random
    network: FlakyNetwork
    client: AsyncCheckinOffersClient
    flaky: bool
    picks_venue: bool  # chooses the venue from the nearby list, so the check-in names it


def _moved(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return lon + east_m / (111_320 * math.cos(math.radians(lat))), lat + north_m / 111_320


def _fix(rng: random.Random, venue: SimVenue, *, careful: bool) -> tuple[float, float, float]:
    """A GPS fix taken at the venue's door: (lon, lat, accuracy_m). Careful fixes are the second try."""
    if careful:
        accuracy = rng.uniform(4, 15)
    else:
        draw = rng.random()
        accuracy = rng.uniform(4, 30) if draw < 0.75 else rng.uniform(30, 90) if draw < 0.93 else rng.uniform(110, 300)
    east, north = rng.gauss(0, accuracy * 0.4), rng.gauss(0, accuracy * 0.4)
    if not careful and rng.random() < 0.08:  # pressed "check in" while still down the street
        distance, angle = rng.uniform(80, 200), rng.uniform(0, 2 * math.pi)
        east, north = distance * math.cos(angle), distance * math.sin(angle)
    lon, lat = _moved(*venue.door, east, north)
    return round(lon, 7), round(lat, 7), round(accuracy, 1)


def _time_on(rng: random.Random, day: int) -> float:
    return day * DAY_S + rng.uniform(7 * 3600, 22 * 3600)


class Simulation:
    def __init__(self, options: Options, catalogue: Catalogue, clock: Clock, staff: dict[str, AsyncCheckinOffersClient],
                 rng: random.Random) -> None:
        self.options = options
        self.catalogue = catalogue
        self.clock = clock
        self.staff = staff
        self.rng = rng
        self.requests = asyncio.Semaphore(options.concurrency)
        self.traffic = Traffic(spoofers=options.spoofer_count)
        self.tallies = {c.id: CampaignTally() for c in catalogue.campaigns}
        self.arms: dict[tuple[str, str], str] = {}  # (user, campaign) -> inferred arm
        self.home: dict[str, SimCampaign] = {}  # user -> the campaign of their first visit, if exposed there
        self.returned: set[tuple[str, str]] = set()  # (user, home campaign) with an accepted return visit
        self.redemptions: list[asyncio.Task[None]] = []
        self.end = options.days * DAY_S

    async def send(self, call: Callable[[], Awaitable[T]]) -> T:
        async with self.requests:
            return await call()

    # A user's life.

    async def live(self, user: SimUser) -> None:
        if user.spoofer:
            await self._spoof(user)
            return
        rng = user.rng
        first_day = rng.randrange(max(1, self.options.days - 1))
        first_at = _time_on(rng, first_day)
        first_venue = rng.choice(self.catalogue.in_city(user.city))
        elsewhere = self.catalogue.in_city(user.city, exclude_merchant=first_venue.merchant_id)
        wander_times = [_time_on(rng, day) for day in range(first_day, self.options.days)
                        if elsewhere and rng.random() < WANDER_PER_DAY]
        visits = [(at, rng.choice(elsewhere)) for at in wander_times if at > first_at]
        await self.visit(user, first_at, first_venue)
        home = next(iter(self.catalogue.campaigns_at(first_venue.id)), None)
        arm = self.arms.get((user.sub, home.id)) if home else None
        if home and arm:
            self.home[user.sub] = home
            self.tallies[home.id].home_users[arm] += 1
            chance = self.options.return_rate + (self.options.lift if arm == "treatment" else 0.0)
            if rng.random() < chance:
                again = self.catalogue.in_city(user.city, merchant_id=first_venue.merchant_id)
                visits += [(rng.uniform(first_at + 3600, self.end),
                            first_venue if rng.random() < 0.7 else rng.choice(again))
                           for _ in range(rng.randint(1, 3))]
        for at, venue in sorted(visits, key=lambda visit: visit[0]):
            await self.visit(user, at, venue)

    async def _spoof(self, user: SimUser) -> None:
        """At home, then 15-60 minutes later "in" the other city, every day."""
        rng = user.rng
        elsewhere = next(city for city in set(CITIES.values()) if city != user.city)
        for day in range(self.options.days):
            at = _time_on(rng, day)
            await self.visit(user, at, rng.choice(self.catalogue.in_city(user.city)))
            venue = rng.choice(self.catalogue.in_city(elsewhere))
            await self.clock.sleep_until(at + rng.uniform(15 * 60, 60 * 60))
            result = await self._check_in(user, venue, *venue.door, 5.0)
            if isinstance(result, CheckinResult) and result.reason == "too_fast":
                self.traffic.spoofers_caught.add(user.sub)

    async def visit(self, user: SimUser, at: float, venue: SimVenue) -> None:
        await self.clock.sleep_until(at)
        offline = user.flaky and user.rng.random() < OFFLINE_VISIT_SHARE
        user.network.offline = offline
        result = await self._check_in(user, venue, *_fix(user.rng, venue, careful=False))
        if isinstance(result, Queued):
            await self.clock.sleep_until(at + user.rng.uniform(20 * 60, 180 * 60))
            user.network.offline = False
            await self._replay(user)
        elif isinstance(result, CheckinResult) and result.reason in RETRYABLE_REJECTIONS:
            self.traffic.retries_at_the_door += 1
            await self.clock.sleep_until(self.clock.now() + user.rng.uniform(60, 180))
            await self._check_in(user, venue, *_fix(user.rng, venue, careful=True))

    async def _check_in(self, user: SimUser, venue: SimVenue, lon: float, lat: float, accuracy: float
                        ) -> CheckinResult | Queued | None:
        venue_id = None
        if user.picks_venue and not user.network.offline:
            try:
                nearby = await self.send(lambda: user.client.nearby(lat, lon, radius_m=500))
            except (TransportError, ApiError):
                nearby = []  # the app falls back to a check-in without a chosen venue
            venue_id = venue.id if any(v.id == venue.id for v in nearby) else None
        checkin = user.client.checkin_or_queue if user.flaky else user.client.checkin
        self.traffic.checkins_sent += 1
        try:
            result = await self.send(lambda: checkin(lat, lon, accuracy, venue_id=venue_id, device_id=user.sub))
        except TransportError:
            self.traffic.unreachable += 1
            return None
        except ApiError as error:
            self.traffic.api_errors[error.code or str(error.status)] += 1
            return None
        if isinstance(result, Queued):
            self.traffic.queued += 1
        else:
            self.record(user, result)
        return result

    async def _replay(self, user: SimUser) -> None:
        for _, outcome in await self.send(user.client.replay_queue):
            self.traffic.replayed += 1
            if isinstance(outcome, ApiError):
                self.traffic.api_errors[outcome.code or str(outcome.status)] += 1
            else:
                self.record(user, outcome)

    # Counting what the server answered.

    def record(self, user: SimUser, result: CheckinResult) -> None:
        accepted = result.status == "accepted"
        self.traffic.answered["accepted" if accepted else result.reason or "rejected"] += 1
        self.traffic.unlocked_in_responses += len(result.unlocked)
        campaigns = self.catalogue.campaigns_at(result.venue.id) if result.venue else []
        for campaign in campaigns:
            tally = self.tallies[campaign.id]
            if not accepted:
                tally.rejected[result.reason or "unknown"] += 1
                continue
            tally.accepted += 1
            key = (user.sub, campaign.id)
            if key not in self.arms:
                arm = "treatment" if any(o.offer_id in campaign.offer_ids for o in result.unlocked) else "control"
                self.arms[key] = arm
                tally.exposed[arm] += 1
            elif self.home.get(user.sub) == campaign and key not in self.returned:
                self.returned.add(key)
                tally.returned_users[self.arms[key]] += 1
        for unlocked in result.unlocked:
            campaign = self.catalogue.campaign_of_offer(unlocked.offer_id)
            if campaign and result.venue and self.rng.random() < self.options.redeem_share:
                delay = self.rng.uniform(2 * 60, 90 * 60)
                self.redemptions.append(asyncio.create_task(
                    self._redeem(unlocked.code, result.venue.id, campaign, self.clock.now() + delay)))

    async def _redeem(self, code: str, venue_id: str, campaign: SimCampaign, at: float) -> None:
        await self.clock.sleep_until(at)
        self.traffic.redemption_attempts += 1
        try:
            await self.send(lambda: self.staff[campaign.merchant_id].redeem(code, venue_id))
        except TransportError:
            self.traffic.unreachable += 1
        except ApiError as error:
            self.traffic.api_errors[f"redeem: {error.code}"] += 1
        else:
            self.tallies[campaign.id].redemptions += 1

    async def count_wallets(self, users: list[SimUser]) -> None:
        for user in users:
            for item in await self.send(user.client.wallet):
                campaign = self.catalogue.campaign_of_offer(item.offer_id)
                if campaign:
                    self.tallies[campaign.id].unlocks += 1


# The run.

async def simulate(options: Options, console: Console | None = None) -> Report:
    """Run the simulation; print progress and the summary; return the counts."""
    console = console or Console()
    settings = get_settings()
    rng = random.Random(options.seed)
    run = uuid.uuid4().hex[:8]  # fresh users on every run, so earlier runs' history does not count
    token_ttl_s = int(options.days * options.day_seconds) + 3600

    def token(sub: str, role: str, merchant_id: str | None = None) -> Callable[[], str]:
        minted = mint_token(settings, sub=sub, role=role, merchant_id=merchant_id, ttl_s=token_ttl_s)
        return lambda: minted

    merchant_ids = [str(m.id) for m in MERCHANTS]
    catalogue = await load_catalogue(options.base_url, {m: token(f"sim-admin-{run}", "merchant_admin", m)()
                                                         for m in merchant_ids})
    env = " ".join(f"{name}={value}" for name, value in server_settings(options).items())
    console.print(f"{options.users} users, {options.days} simulated days of {options.day_seconds:g} s "
                  f"(speedup {options.speedup:,.0f}) against {options.base_url}; {len(catalogue.venues)} venues, "
                  f"{len(catalogue.campaigns)} active campaigns.\nFor realistic verdicts the server runs with: {env}")

    pool = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=options.concurrency))

    def client(sub: str, role: str, network: httpx.AsyncBaseTransport, *, merchant_id: str | None = None,
               queue: OfflineQueue | None = None) -> AsyncCheckinOffersClient:
        return AsyncCheckinOffersClient(options.base_url, token(sub, role, merchant_id), transport=network,
                                        queue=queue, max_attempts=SDK_ATTEMPTS,
                                        rng=random.Random(rng.random()))

    shared = FlakyNetwork(pool)  # never offline: the back office and the tills
    admins = {m: client(f"sim-admin-{run}", "merchant_admin", shared, merchant_id=m) for m in merchant_ids}
    staff = {m: client(f"sim-staff-{run}", "merchant_staff", shared, merchant_id=m) for m in merchant_ids}
    with tempfile.TemporaryDirectory(prefix="checkin-sim-") as queues:
        users = []
        for i in range(options.users):
            sub, network = f"sim-{run}-{i:04d}", FlakyNetwork(pool)
            flaky = rng.random() < options.offline_share
            queue = OfflineQueue(Path(queues) / f"{sub}.sqlite3") if flaky else None
            users.append(SimUser(sub=sub, city=rng.choice(sorted(set(CITIES.values()))),
                                 spoofer=i < options.spoofer_count, rng=random.Random(rng.random()),
                                 network=network, client=client(sub, "app_user", network, queue=queue),
                                 flaky=flaky, picks_venue=rng.random() < 0.4))
        try:
            before = {c.id: stats_metrics((await admins[c.merchant_id].campaign_stats(c.id))["funnel"])
                      for c in catalogue.campaigns}
            simulation = Simulation(options, catalogue, Clock(options.speedup), staff, rng)
            await _run_users(simulation, users, console)
            await asyncio.gather(*simulation.redemptions)
            await simulation.count_wallets(users)
            after = {c.id: stats_metrics((await admins[c.merchant_id].campaign_stats(c.id))["funnel"])
                     for c in catalogue.campaigns}
        finally:
            for sdk_client in [*admins.values(), *staff.values(), *(u.client for u in users)]:
                await sdk_client.aclose()
            await pool.aclose()

    report = Report(options, simulation.traffic, [
        CampaignReport(c.id, c.name, simulation.tallies[c.id].comparable(), difference(after[c.id], before[c.id]),
                       dict(simulation.tallies[c.id].home_users), dict(simulation.tallies[c.id].returned_users))
        for c in catalogue.campaigns])
    print_summary(report, console)
    return report


async def _run_users(simulation: Simulation, users: list[SimUser], console: Console) -> None:
    days = simulation.options.days
    columns = [TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        clock_bar = progress.add_task("simulated time (h)", total=days * 24)
        users_bar = progress.add_task("users done", total=len(users))

        async def live(user: SimUser) -> None:
            await simulation.live(user)
            progress.advance(users_bar)

        async def tick() -> None:
            while True:
                hours = min(simulation.clock.now(), simulation.end) / 3600
                day = min(days, int(hours // 24) + 1)
                progress.update(clock_bar, completed=int(hours), description=f"simulated day {day}/{days} (h)")
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick())
        try:
            async with asyncio.TaskGroup() as group:
                for user in users:
                    group.create_task(live(user))
        finally:
            ticker.cancel()
        progress.update(clock_bar, completed=days * 24)


# The summary.

def _rate(returned: int, users: int) -> str:
    return f"{returned}/{users} = {returned / users:.0%}" if users else "-"


def print_summary(report: Report, console: Console) -> None:
    traffic = report.traffic
    table = Table(title="Traffic (simulator)")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [("check-ins sent", traffic.checkins_sent),
            ("answered: accepted", traffic.answered["accepted"]),
            *((f"answered: {reason}", n) for reason, n in sorted(traffic.answered.items()) if reason != "accepted"),
            ("second tries at the door", traffic.retries_at_the_door),
            ("queued offline", traffic.queued), ("replayed from the queue", traffic.replayed),
            ("server unreachable", traffic.unreachable),
            *((f"API error: {code}", n) for code, n in sorted(traffic.api_errors.items())),
            ("unlocked in check-in responses", traffic.unlocked_in_responses),
            ("redemption attempts", traffic.redemption_attempts),
            ("spoofers caught (too_fast)", f"{len(traffic.spoofers_caught)} of {traffic.spoofers}")]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)

    for campaign in report.campaigns:
        table = Table(title=f"{campaign.name}: simulator vs GET /v1/campaigns/{{id}}/stats (change over the run)")
        for name, justify in (("metric", "left"), ("simulator", "right"), ("stats API", "right"), ("", "center")):
            table.add_column(name, justify=justify)
        for name in sorted(campaign.simulated.keys() | campaign.stats.keys()):
            simulated, stats = campaign.simulated.get(name, 0), campaign.stats.get(name, 0)
            table.add_row(name, str(simulated), str(stats), "✓" if simulated == stats else "✗")
        console.print(table)

    table = Table(title=f"Return visits of users whose first visit exposed them (true lift {report.options.lift:+.0%})")
    for name in ("campaign", "treatment returned", "control returned", "measured lift (95% CI)"):
        table.add_column(name)
    for campaign in report.campaigns:
        x_t, n_t = campaign.returned_users.get("treatment", 0), campaign.home_users.get("treatment", 0)
        x_c, n_c = campaign.returned_users.get("control", 0), campaign.home_users.get("control", 0)
        lift = "-"
        if n_t and n_c:
            low, high = newcombe_diff_interval(x_t, n_t, x_c, n_c)
            lift = f"{x_t / n_t - x_c / n_c:+.0%} ({low:+.0%} to {high:+.0%})"
        table.add_row(campaign.name, _rate(x_t, n_t), _rate(x_c, n_c), lift)
    console.print(table)
    agree = all(c.agrees for c in report.campaigns)
    console.print("The stats endpoint agrees with the simulator's counts." if agree
                  else "[bold red]The stats endpoint and the simulator disagree (rows marked ✗).[/]")


def main(args: argparse.Namespace) -> Report:
    options = Options(base_url=args.base_url, users=args.users, days=args.days, seed=args.seed,
                      day_seconds=args.day_seconds, spoofers=args.spoofers, lift=args.lift,
                      return_rate=args.return_rate, offline_share=args.offline_share,
                      redeem_share=args.redeem_share, concurrency=args.concurrency)
    return asyncio.run(simulate(options))
