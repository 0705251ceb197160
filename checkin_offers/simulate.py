"""Realistic traffic through the SDK against a running service: `checkin-offers simulate`.

Run it against a server seeded with `checkin-offers seed-demo`, with the server's CHECKIN_JWT_SECRET
in the environment (the simulator mints its users' and staff's tokens with `core.auth.mint_token`).
It finds the demo merchants' venues and active campaigns through the merchant API, then drives all
app and till traffic through `mobile_sdk.AsyncCheckinOffersClient`, as fast as the server answers.
`checkin-offers seed-demo --with-activity` runs it against a server of its own (see demo.py).

History. The simulated users' visits happened over the past `--history-days` days (default 3):
every check-in carries its own observed_at in that window, and each user's check-ins are sent in
the order they were observed. The server judges a fix by its observed_at (speed, cool-down, offer
rules and schedules, campaign dates, attribution windows, the stats' days of check-ins and
exposures), so the history goes through the real rules. On the server's clock ("now") are only code
expiry, redemptions (so the stats' time to redeem is about zero), the unlocks' stats day, and a group
offer's "not unlocked in the last N minutes". The server must accept fixes that old; start it with
(the simulator prints the exact line)

    CHECKIN_MAX_FIX_AGE_S=<history days x 86400 + 3600>

A server with the default limit (10 minutes) rejects nearly everything as stale; the summary says
so. The other limits stay at their production values; the per-user rate limit
(CHECKIN_CHECKIN_RATE_PER_MINUTE) counts real minutes, which a long history of few users can hit
(the summary counts such answers as API errors). Users are independent tasks, so the server
sees one user's check-ins in order but different users' interleaved regardless of when they were
observed: a flash offer's "first N" are the first to reach the server. History never starts
before the latest start of the active campaigns (an older demo database has campaigns that started
on the day it was seeded). `--seed` fixes the population and its plans; the order in which
concurrent requests reach the server, and so the exact counts, vary from run to run.

Who does what. Users live in Oslo or Copenhagen and visit between 7:00 and 21:30 local time, most
often in the morning. A regular user makes a first visit to a random venue of their city (a few
go as three friends to a venue with a group offer), later wanders to the other merchant's venues,
and returns to the first merchant with a known probability: `--return-rate` in the control arm,
plus `--lift` in the treatment arm (the offer's true effect); a returning user is back within a
day, and may come again later. Fixes have GPS noise and varying accuracy; some are taken too
early, still down the street, or indoors with a poor fix; after such a rejection the user tries
once more at the door a minute or two later. A share of users (`--offline-share`) have flaky
connectivity: at some visits their phone goes offline for 20 minutes to 3 hours, check-ins made
meanwhile go to the SDK's offline queue (`checkin_or_queue`) and `replay_queue` sends them, late,
with their original observed_at when the phone is back. Spoofers (`--spoofers`) check in at home,
then 15-60 minutes later "in" the other city, 480 km away, every day: the server should answer
too_fast. Staff redeem a share (`--redeem-share`) of the codes that check-ins unlock.

Arms. The API never tells an app its arm, so the simulator infers it, per user and campaign, from
the user's first accepted check-in at one of the campaign's venues (their exposure): treatment if
that check-in unlocked one of the campaign's offers, control if it unlocked none. This is exact
when the campaign has an unscheduled every_checkin or first_checkin offer with budget left, as
both demo campaigns do: such an offer unlocks on every treatment user's first check-in.

Counting. Each server answer is counted for the campaigns running, at its observed_at, at the
venue it names (a rejection names the venue it was matched to or found nearest), exactly as the
server's counters do; accepted check-ins also by their observed UTC day. Unlocks are counted from
the users' wallets at the end (a group offer unlocks for the other members of the group into their
wallets, not into the response). The summary shows these counts next to the change in
GET /v1/campaigns/{id}/stats over the run, then each campaign's measured effect from the stats
(users whose attribution window has closed) next to the true lift; `simulate` returns them
(`Report`) so tests can compare.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import math
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import shapely
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from checkin_offers.demo_merchants import MERCHANTS
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

T = TypeVar("T")

DAY = timedelta(days=1)
FIX_AGE_SLACK_S = 3600  # the run itself takes time: its oldest fixes are sent a little after the history began
CITIES = {"Europe/Oslo": "Oslo", "Europe/Copenhagen": "Copenhagen"}
VISITING_HOURS = ((7.0, 10.5, 35), (10.5, 14.0, 25), (14.0, 18.0, 25), (18.0, 21.5, 15))  # local from, to, weight
WANDER_PER_DAY = 0.4  # chance a regular user visits the other merchant on a given day
FIRST_RETURN_WITHIN = timedelta(hours=22)  # a returning user is back within a day ...
LATER_RETURNS = (0, 2)  # ... and comes this many more times, any time later
RETURN_TO_SAME_VENUE = 0.7
FRIENDS_SHARE = 0.15  # of regular users: first visit as one of three friends at a venue with a group offer
OFFLINE_VISIT_SHARE = 0.4  # of a flaky user's visits, made as the phone goes offline
OFFLINE_FOR = (timedelta(minutes=20), timedelta(hours=3))
RETRYABLE_REJECTIONS = {"outside_geofence", "accuracy_too_low", "venue_mismatch"}
SDK_ATTEMPTS = 3  # an offline phone gives up quickly and queues; backoff waits are real seconds
TOKEN_TTL_S = 3600


@dataclass(frozen=True)
class Options:
    base_url: str = "http://127.0.0.1:8000"
    users: int = 200
    history_days: int = 3
    seed: int = 7
    spoofers: int | None = None  # default: one user in twenty
    lift: float = 0.15
    return_rate: float = 0.30
    offline_share: float = 0.15
    redeem_share: float = 0.6
    concurrency: int = 16

    @property
    def spoofer_count(self) -> int:
        return self.users // 20 if self.spoofers is None else min(self.spoofers, self.users)


def required_fix_age_s(history_days: int) -> int:
    """The CHECKIN_MAX_FIX_AGE_S a server needs to accept a history of this many days."""
    return history_days * 86_400 + FIX_AGE_SLACK_S


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
    starts_at: datetime
    ends_at: datetime
    attribution_days: int
    has_group_offer: bool


@dataclass(frozen=True)
class Catalogue:
    venues: tuple[SimVenue, ...]
    campaigns: tuple[SimCampaign, ...]

    def in_city(
        self, city: str, *, merchant_id: str | None = None, exclude_merchant: str | None = None
    ) -> list[SimVenue]:
        return [
            v
            for v in self.venues
            if v.city == city and merchant_id in (None, v.merchant_id) and v.merchant_id != exclude_merchant
        ]

    def campaigns_at(self, venue_id: str, at: datetime) -> list[SimCampaign]:
        """The campaigns running at a venue at a moment, as the server decides which count a check-in."""
        return [c for c in self.campaigns if venue_id in c.venue_ids and c.starts_at <= at < c.ends_at]

    def campaign_of_offer(self, offer_id: str) -> SimCampaign | None:
        return next((c for c in self.campaigns if offer_id in c.offer_ids), None)

    def group_venues(self, city: str) -> list[SimVenue]:
        return [v for v in self.in_city(city) if any(v.id in c.venue_ids and c.has_group_offer for c in self.campaigns)]


def _door(geofence: dict[str, Any]) -> tuple[float, float]:
    if geofence["type"] == "Circle":
        lon, lat = geofence["center"]
        return lon, lat
    point = shapely.geometry.shape(geofence).representative_point()
    return point.x, point.y


async def _pages(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[dict]:
    items, cursor = [], None
    while True:
        response = await http.get(
            path, params={"limit": 100, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
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
                raise RuntimeError(
                    f"{exc.response.status_code} from {exc.request.url}: {exc.response.text} "
                    "(the simulator needs the server's CHECKIN_JWT_SECRET and demo merchants)"
                ) from exc
            venues += [
                SimVenue(v["id"], v["name"], merchant_id, CITIES[v["timezone"]], _door(v["geofence"]))
                for v in merchant_venues
                if v["timezone"] in CITIES
            ]
            for c in merchant_campaigns:
                starts_at, ends_at = datetime.fromisoformat(c["starts_at"]), datetime.fromisoformat(c["ends_at"])
                if c["status"] == "active" and starts_at <= now < ends_at:
                    campaigns.append(
                        SimCampaign(
                            c["id"],
                            c["name"],
                            merchant_id,
                            frozenset(c["venue_ids"]),
                            frozenset(o["id"] for o in c["offers"]),
                            starts_at,
                            ends_at,
                            c["attribution_days"],
                            any(o["rule"]["type"] == "group" for o in c["offers"]),
                        )
                    )
    if not venues or not campaigns:
        raise RuntimeError(
            "no demo venues or active campaigns found: run `checkin-offers seed-demo` against "
            "the server's database first"
        )
    return Catalogue(tuple(venues), tuple(campaigns))


# What the simulator counts.

BASE_METRICS = ("check-ins accepted", "exposed: treatment", "exposed: control", "unlocks", "redemptions")


@dataclass
class CampaignTally:
    accepted: int = 0
    accepted_by_day: Counter[date] = field(default_factory=Counter)  # observed UTC day
    rejected: Counter[str] = field(default_factory=Counter)
    exposed: Counter[str] = field(default_factory=Counter)  # by arm
    unlocks: int = 0  # from the wallets
    redemptions: int = 0
    home_users: Counter[str] = field(default_factory=Counter)  # by arm: users whose first visit was here
    returned_users: Counter[str] = field(default_factory=Counter)

    def comparable(self) -> dict[str, int]:
        return funnel_metrics(
            self.accepted,
            self.rejected,
            self.exposed,
            self.unlocks,
            self.redemptions,
            {day.isoformat(): n for day, n in self.accepted_by_day.items()},
        )


def funnel_metrics(
    accepted: int,
    rejected: dict[str, int],
    exposed: dict[str, int],
    unlocks: int,
    redemptions: int,
    accepted_by_day: dict[str, int],
) -> dict[str, int]:
    """The numbers both sides count, under one set of names (BASE_METRICS first)."""
    metrics = dict(
        zip(
            BASE_METRICS,
            (accepted, exposed.get("treatment", 0), exposed.get("control", 0), unlocks, redemptions),
            strict=True,
        )
    )
    metrics |= {f"rejected: {reason}": n for reason, n in sorted(rejected.items()) if n}
    metrics |= {f"accepted on {day}": n for day, n in sorted(accepted_by_day.items()) if n}
    return metrics


def stats_metrics(stats: dict[str, Any]) -> dict[str, int]:
    funnel = stats["funnel"]
    return funnel_metrics(
        funnel["checkins_accepted"],
        funnel["rejected_by_reason"],
        {"treatment": funnel["exposed_treatment"], "control": funnel["exposed_control"]},
        funnel["unlocks"],
        funnel["redemptions"],
        {row["day"]: row["checkins_accepted"] for row in stats["by_day"]},
    )


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {name: after.get(name, 0) - before.get(name, 0) for name in [*after, *before]}
    return {name: n for name, n in changed.items() if n or name in BASE_METRICS}


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
    stats: dict[str, int]  # the change in the stats endpoint's counts over the run
    home_users: dict[str, int]
    returned_users: dict[str, int]
    stats_after: dict[str, Any]  # the stats endpoint's whole answer at the end

    @property
    def agrees(self) -> bool:
        return self.simulated == self.stats


@dataclass(frozen=True)
class Report:
    options: Options
    history: tuple[datetime, datetime]
    traffic: Traffic
    campaigns: list[CampaignReport]


# Time and network.


def visiting_time(rng: random.Random, tz: ZoneInfo, earliest: datetime, latest: datetime) -> datetime | None:
    """A moment between earliest and latest at a likely hour for a visit, in the city's local time;
    None when the span holds (almost) no visiting hours."""
    first_day, last_day = earliest.astimezone(tz).date(), latest.astimezone(tz).date()
    if latest <= earliest:
        return None
    weights = [weight for *_, weight in VISITING_HOURS]
    for _ in range(100):
        day = first_day + timedelta(days=rng.randint(0, (last_day - first_day).days))
        start, end, _ = rng.choices(VISITING_HOURS, weights)[0]
        local = datetime.combine(day, time(), tz) + timedelta(hours=rng.uniform(start, end))
        if earliest <= local <= latest:
            return local.astimezone(UTC).replace(microsecond=0)
    return None


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


@dataclass(order=True)
class Event:
    """Something a user does at a moment of the history; a user's events run in time order."""

    at: datetime
    seq: int  # ties run in the order they were planned
    kind: str = field(compare=False)  # visit, retry (at the door), back_online, hop (a spoofer's jump)
    venue: SimVenue | None = field(default=None, compare=False)


@dataclass
class SimUser:
    sub: str
    city: str
    tz: ZoneInfo
    spoofer: bool
    rng: random.Random
    network: FlakyNetwork
    client: AsyncCheckinOffersClient
    flaky: bool
    picks_venue: bool  # chooses the venue from the nearby list, so the check-in names it
    first_visit: tuple[datetime, SimVenue] | None = None  # set in advance for friends who go together
    home: SimCampaign | None = None  # the campaign at the first visit's venue
    home_venue: SimVenue | None = None
    plan: list[Event] = field(default_factory=list)  # a heap


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


def _tz_of(city: str) -> ZoneInfo:
    return ZoneInfo(next(tz for tz, name in CITIES.items() if name == city))


class Simulation:
    def __init__(
        self,
        options: Options,
        catalogue: Catalogue,
        history: tuple[datetime, datetime],
        staff: dict[str, AsyncCheckinOffersClient],
    ) -> None:
        self.options = options
        self.catalogue = catalogue
        self.start, self.end = history
        self.staff = staff
        self.requests = asyncio.Semaphore(options.concurrency)
        self.traffic = Traffic(spoofers=options.spoofer_count)
        self.tallies = {c.id: CampaignTally() for c in catalogue.campaigns}
        self.arms: dict[tuple[str, str], str] = {}  # (user, campaign) -> inferred arm
        self.exposed_at: dict[tuple[str, str], datetime] = {}
        self.returned: set[tuple[str, str]] = set()  # (user, home campaign) with an accepted return visit
        self.redemptions: list[asyncio.Task[None]] = []
        self._seq = itertools.count()
        # First visits leave at least a day for coming back, when the history is that long.
        self.latest_first_visit = self.end - DAY if self.end - self.start >= 2 * DAY else self.end

    async def send(self, call: Callable[[], Awaitable[T]]) -> T:
        async with self.requests:
            return await call()

    def schedule(self, user: SimUser, at: datetime, kind: str, venue: SimVenue | None = None) -> None:
        """Plan an event; a check-in that would be observed after the history's end (the run's "now",
        e.g. a second try at the door just before it) is not made."""
        if kind == "back_online" or at <= self.end:
            heapq.heappush(user.plan, Event(at, next(self._seq), kind, venue))

    def plan_outings(self, users: list[SimUser], rng: random.Random) -> None:
        """Some regular users make their first visit as three friends, within minutes of each other."""
        for city in sorted(set(CITIES.values())):
            venues = self.catalogue.group_venues(city)
            regulars = [u for u in users if u.city == city and not u.spoofer]
            friends = regulars[: int(len(regulars) * FRIENDS_SHARE) // 3 * 3]
            for i in range(0, len(friends) if venues else 0, 3):
                at = visiting_time(rng, friends[i].tz, self.start, self.latest_first_visit)
                venue = rng.choice(venues)
                for friend in friends[i : i + 3] if at else []:
                    friend.first_visit = (min(self.end, at + timedelta(minutes=rng.uniform(0, 8))), venue)

    # A user's life.

    async def live(self, user: SimUser) -> None:
        if user.spoofer:
            self._plan_spoofer(user)
        else:
            self._plan_regular(user)
        while user.plan:
            event = heapq.heappop(user.plan)
            if event.kind == "back_online":
                user.network.offline = False
                await self._replay(user, event.at)
            elif event.kind == "hop":
                result = await self._check_in(user, event, *event.venue.door, 5.0)
                if isinstance(result, CheckinResult) and result.reason == "too_fast":
                    self.traffic.spoofers_caught.add(user.sub)
            else:
                await self._visit(user, event)

    def _plan_regular(self, user: SimUser) -> None:
        rng = user.rng
        if user.first_visit:
            first_at, venue = user.first_visit
        else:
            first_at = visiting_time(rng, user.tz, self.start, self.latest_first_visit)
            venue = rng.choice(self.catalogue.in_city(user.city))
        if first_at is None:
            return
        user.home, user.home_venue = next(iter(self.catalogue.campaigns_at(venue.id, first_at)), None), venue
        self.schedule(user, first_at, "visit", venue)
        elsewhere = self.catalogue.in_city(user.city, exclude_merchant=venue.merchant_id)
        for _ in range(self.options.history_days):
            if elsewhere and rng.random() < WANDER_PER_DAY:
                at = visiting_time(rng, user.tz, first_at + timedelta(minutes=30), self.end)
                if at:
                    self.schedule(user, at, "visit", rng.choice(elsewhere))

    def _plan_returns(self, user: SimUser, arm: str, exposed_at: datetime, now: datetime) -> None:
        """Called at the user's exposure to their home campaign: come back, or not."""
        rng = user.rng
        chance = self.options.return_rate + (self.options.lift if arm == "treatment" else 0.0)
        if user.home_venue is None or rng.random() >= chance:
            return
        again = self.catalogue.in_city(user.city, merchant_id=user.home_venue.merchant_id)
        earliest = max(exposed_at + timedelta(hours=2), now + timedelta(minutes=1))  # never before what was sent
        spans = [(earliest, min(self.end, exposed_at + FIRST_RETURN_WITHIN))]
        spans += [(earliest, self.end)] * rng.randint(*LATER_RETURNS)
        for low, high in spans:
            at = visiting_time(rng, user.tz, low, high)
            if at:
                self.schedule(
                    user, at, "visit", user.home_venue if rng.random() < RETURN_TO_SAME_VENUE else rng.choice(again)
                )

    def _plan_spoofer(self, user: SimUser) -> None:
        """At home, then 15-60 minutes later "in" the other city, every day."""
        rng = user.rng
        elsewhere = next(city for city in set(CITIES.values()) if city != user.city)
        for day in range(self.options.history_days):
            day_start = self.start + day * DAY
            at = visiting_time(rng, user.tz, day_start, min(day_start + DAY, self.end - timedelta(hours=1)))
            if at:
                self.schedule(user, at, "visit", rng.choice(self.catalogue.in_city(user.city)))
                self.schedule(
                    user,
                    at + timedelta(minutes=rng.uniform(15, 60)),
                    "hop",
                    rng.choice(self.catalogue.in_city(elsewhere)),
                )

    async def _visit(self, user: SimUser, event: Event) -> None:
        careful = event.kind == "retry"
        if user.flaky and not user.network.offline and not careful and user.rng.random() < OFFLINE_VISIT_SHARE:
            user.network.offline = True  # until back_online; visits meanwhile are queued too
            self.schedule(user, event.at + user.rng.uniform(*OFFLINE_FOR), "back_online")
        result = await self._check_in(user, event, *_fix(user.rng, event.venue, careful=careful))
        if not careful and isinstance(result, CheckinResult) and result.reason in RETRYABLE_REJECTIONS:
            self.traffic.retries_at_the_door += 1
            self.schedule(user, event.at + timedelta(seconds=user.rng.uniform(60, 180)), "retry", event.venue)

    async def _check_in(
        self, user: SimUser, event: Event, lon: float, lat: float, accuracy: float
    ) -> CheckinResult | Queued | None:
        venue_id = None
        if user.picks_venue and not user.network.offline:
            try:
                nearby = await self.send(lambda: user.client.nearby(lat, lon, radius_m=500))
            except (TransportError, ApiError):
                nearby = []  # the app falls back to a check-in without a chosen venue
            venue_id = event.venue.id if any(v.id == event.venue.id for v in nearby) else None
        checkin = user.client.checkin_or_queue if user.flaky else user.client.checkin
        self.traffic.checkins_sent += 1
        try:
            result = await self.send(
                lambda: checkin(lat, lon, accuracy, observed_at=event.at, venue_id=venue_id, device_id=user.sub)
            )
        except TransportError:
            self.traffic.unreachable += 1
            return None
        except ApiError as error:
            self.traffic.api_errors[error.code or str(error.status)] += 1
            return None
        if isinstance(result, Queued):
            self.traffic.queued += 1
        else:
            self.record(user, result, event.at, event.at)
        return result

    async def _replay(self, user: SimUser, now: datetime) -> None:
        for item, outcome in await self.send(user.client.replay_queue):
            self.traffic.replayed += 1
            if isinstance(outcome, ApiError):
                self.traffic.api_errors[outcome.code or str(outcome.status)] += 1
            else:
                self.record(user, outcome, item.request.observed_at, now)

    # Counting what the server answered.

    def record(self, user: SimUser, result: CheckinResult, observed_at: datetime, now: datetime) -> None:
        """Count one answer; `now` is the moment of the history at which it arrived (later for a replay)."""
        accepted = result.status == "accepted"
        self.traffic.answered["accepted" if accepted else result.reason or "rejected"] += 1
        self.traffic.unlocked_in_responses += len(result.unlocked)
        campaigns = self.catalogue.campaigns_at(result.venue.id, observed_at) if result.venue else []
        for campaign in campaigns:
            tally = self.tallies[campaign.id]
            if not accepted:
                tally.rejected[result.reason or "unknown"] += 1
                continue
            tally.accepted += 1
            tally.accepted_by_day[observed_at.astimezone(UTC).date()] += 1
            key = (user.sub, campaign.id)
            if key not in self.arms:
                arm = "treatment" if any(o.offer_id in campaign.offer_ids for o in result.unlocked) else "control"
                self.arms[key], self.exposed_at[key] = arm, observed_at
                tally.exposed[arm] += 1
                if campaign == user.home:
                    tally.home_users[arm] += 1
                    self._plan_returns(user, arm, observed_at, now)
            elif campaign == user.home and key not in self.returned and observed_at > self.exposed_at[key]:
                self.returned.add(key)
                tally.returned_users[self.arms[key]] += 1
        for unlocked in result.unlocked:
            campaign = self.catalogue.campaign_of_offer(unlocked.offer_id)
            if campaign and result.venue and user.rng.random() < self.options.redeem_share:
                self.redemptions.append(asyncio.create_task(self._redeem(unlocked.code, result.venue.id, campaign)))

    async def _redeem(self, code: str, venue_id: str, campaign: SimCampaign) -> None:
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
    if options.history_days < 1:
        raise ValueError("the history must be at least one day long")
    console = console or Console()
    settings = get_settings()
    rng = random.Random(options.seed)
    run = uuid.uuid4().hex[:8]  # fresh users on every run, so earlier runs' history does not count

    def token(sub: str, role: str, merchant_id: str | None = None) -> Callable[[], str]:
        minted = mint_token(settings, sub=sub, role=role, merchant_id=merchant_id, ttl_s=TOKEN_TTL_S)
        return lambda: minted

    merchant_ids = [str(m.id) for m in MERCHANTS]
    catalogue = await load_catalogue(
        options.base_url, {m: token(f"sim-admin-{run}", "merchant_admin", m)() for m in merchant_ids}
    )
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - options.history_days * DAY
    latest_campaign_start = max(c.starts_at for c in catalogue.campaigns)
    if latest_campaign_start > start:
        console.print(f"A campaign started at {latest_campaign_start:%Y-%m-%d %H:%M %Z}: the history starts then.")
        start = latest_campaign_start
    days = f"{options.history_days} day{'s' if options.history_days > 1 else ''}"
    console.print(
        f"{options.users} users, {days} of history ({start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC) against {options.base_url}; {len(catalogue.venues)} venues, "
        f"{len(catalogue.campaigns)} active campaigns.\nThe server accepts fixes that old with "
        f"CHECKIN_MAX_FIX_AGE_S={required_fix_age_s(options.history_days)}."
    )

    pool = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=options.concurrency))

    def client(
        sub: str,
        role: str,
        network: httpx.AsyncBaseTransport,
        *,
        merchant_id: str | None = None,
        queue: OfflineQueue | None = None,
    ) -> AsyncCheckinOffersClient:
        return AsyncCheckinOffersClient(
            options.base_url,
            token(sub, role, merchant_id),
            transport=network,
            queue=queue,
            max_attempts=SDK_ATTEMPTS,
            rng=random.Random(rng.random()),
        )

    shared = FlakyNetwork(pool)  # never offline: the back office and the tills
    admins = {m: client(f"sim-admin-{run}", "merchant_admin", shared, merchant_id=m) for m in merchant_ids}
    staff = {m: client(f"sim-staff-{run}", "merchant_staff", shared, merchant_id=m) for m in merchant_ids}
    simulation = Simulation(options, catalogue, (start, end), staff)
    with tempfile.TemporaryDirectory(prefix="checkin-sim-") as queues:
        users = []
        for i in range(options.users):
            sub, network = f"sim-{run}-{i:04d}", FlakyNetwork(pool)
            flaky = rng.random() < options.offline_share
            queue = OfflineQueue(Path(queues) / f"{sub}.sqlite3") if flaky else None
            city = rng.choice(sorted(set(CITIES.values())))
            users.append(
                SimUser(
                    sub=sub,
                    city=city,
                    tz=_tz_of(city),
                    spoofer=i < options.spoofer_count,
                    rng=random.Random(rng.random()),
                    network=network,
                    client=client(sub, "app_user", network, queue=queue),
                    flaky=flaky,
                    picks_venue=rng.random() < 0.4,
                )
            )
        simulation.plan_outings(users, rng)
        try:
            before = {c.id: await admins[c.merchant_id].campaign_stats(c.id) for c in catalogue.campaigns}
            await _run_users(simulation, users, console)
            await asyncio.gather(*simulation.redemptions)
            await simulation.count_wallets(users)
            after = {c.id: await admins[c.merchant_id].campaign_stats(c.id) for c in catalogue.campaigns}
        finally:
            for sdk_client in [*admins.values(), *staff.values(), *(u.client for u in users)]:
                await sdk_client.aclose()
            await pool.aclose()

    report = Report(
        options,
        (start, end),
        simulation.traffic,
        [
            CampaignReport(
                c.id,
                c.name,
                simulation.tallies[c.id].comparable(),
                difference(stats_metrics(after[c.id]), stats_metrics(before[c.id])),
                dict(simulation.tallies[c.id].home_users),
                dict(simulation.tallies[c.id].returned_users),
                after[c.id],
            )
            for c in catalogue.campaigns
        ],
    )
    print_summary(report, console)
    return report


async def _run_users(simulation: Simulation, users: list[SimUser], console: Console) -> None:
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[checkins]} check-ins sent"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("simulated users", total=len(users), checkins=0)

        async def live(user: SimUser) -> None:
            await simulation.live(user)
            progress.advance(bar)

        async def tick() -> None:
            while True:
                progress.update(bar, checkins=simulation.traffic.checkins_sent)
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick())
        try:
            async with asyncio.TaskGroup() as group:
                for user in users:
                    group.create_task(live(user))
        finally:
            ticker.cancel()
        progress.update(bar, checkins=simulation.traffic.checkins_sent)


# The summary.


def _rate(returned: int, users: int) -> str:
    return f"{returned}/{users} = {returned / users:.0%}" if users else "-"


def _lift(interval: dict[str, float] | None) -> str:
    if interval is None:
        return "-"
    # a difference of rates: percentage points, not percent
    points = {key: interval[key] * 100 for key in ("estimate", "ci_low", "ci_high")}
    return f"{points['estimate']:+.0f} pp ({points['ci_low']:+.0f} to {points['ci_high']:+.0f} pp)"


def print_summary(report: Report, console: Console) -> None:
    traffic = report.traffic
    table = Table(title="Traffic (simulator)")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("check-ins sent", traffic.checkins_sent),
        ("answered: accepted", traffic.answered["accepted"]),
        *((f"answered: {reason}", n) for reason, n in sorted(traffic.answered.items()) if reason != "accepted"),
        ("second tries at the door", traffic.retries_at_the_door),
        ("queued offline", traffic.queued),
        ("replayed from the queue", traffic.replayed),
        ("server unreachable", traffic.unreachable),
        *((f"API error: {code}", n) for code, n in sorted(traffic.api_errors.items())),
        ("unlocked in check-in responses", traffic.unlocked_in_responses),
        ("redemption attempts", traffic.redemption_attempts),
        ("spoofers caught (too_fast)", f"{len(traffic.spoofers_caught)} of {traffic.spoofers}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)

    for campaign in report.campaigns:
        table = Table(title=f"{campaign.name}: simulator vs GET /v1/campaigns/{{id}}/stats (change over the run)")
        for name, justify in (("metric", "left"), ("simulator", "right"), ("stats API", "right"), ("", "center")):
            table.add_column(name, justify=justify)
        for name in dict.fromkeys([*campaign.simulated, *campaign.stats]):
            simulated, stats = campaign.simulated.get(name, 0), campaign.stats.get(name, 0)
            table.add_row(name, str(simulated), str(stats), "✓" if simulated == stats else "✗")
        console.print(table)

    options = report.options
    table = Table(title="Return visits: the simulated truth and what the stats API measured")
    table.add_column("")
    for campaign in report.campaigns:
        table.add_column(campaign.name, justify="right")
    effects = [c.stats_after["effect"] for c in report.campaigns]
    rows = {
        "true return chance, treatment / control": [
            f"{options.return_rate + options.lift:.0%} / {options.return_rate:.0%}" for _ in report.campaigns
        ],
        "simulator: returned, treatment (history)": [
            _rate(c.returned_users.get("treatment", 0), c.home_users.get("treatment", 0)) for c in report.campaigns
        ],
        "simulator: returned, control (history)": [
            _rate(c.returned_users.get("control", 0), c.home_users.get("control", 0)) for c in report.campaigns
        ],
        "stats: attribution window": [f"{e['attribution_days']} day(s)" for e in effects],
        "stats: returned, treatment (closed windows)": [
            _rate(e["arms"]["treatment"]["returned_users"], e["arms"]["treatment"]["users_window_closed"])
            for e in effects
        ],
        "stats: returned, control (closed windows)": [
            _rate(e["arms"]["control"]["returned_users"], e["arms"]["control"]["users_window_closed"]) for e in effects
        ],
        "stats: absolute lift, pp (95% CI)": [_lift(e["absolute_lift"]) for e in effects],
        "stats: status": [c.stats_after["status"] for c in report.campaigns],
    }
    for name, values in rows.items():
        table.add_row(name, *values)
    console.print(table)
    stale = traffic.answered["stale"]
    if stale:
        console.print(
            f"[bold red]{stale} check-ins were rejected as stale: start the server with "
            f"CHECKIN_MAX_FIX_AGE_S={required_fix_age_s(options.history_days)} or more.[/]"
        )
    agree = all(c.agrees for c in report.campaigns)
    console.print(
        "The stats endpoint agrees with the simulator's counts."
        if agree
        else "[bold red]The stats endpoint and the simulator disagree (rows marked ✗).[/]"
    )


def main(args: argparse.Namespace) -> Report:
    options = Options(
        base_url=args.base_url,
        users=args.users,
        history_days=args.history_days,
        seed=args.seed,
        spoofers=args.spoofers,
        lift=args.lift,
        return_rate=args.return_rate,
        offline_share=args.offline_share,
        redeem_share=args.redeem_share,
        concurrency=args.concurrency,
    )
    return asyncio.run(simulate(options))
