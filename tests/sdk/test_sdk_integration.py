"""The SDK against the real service: lost responses, the offline queue across restarts, typed errors.

Network failures are injected by transports that forward each request to the live server and then
lose the answer, so the server has done the work the client never hears about.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.auth import mint_token
from mobile_sdk import (
    AlreadyRedeemedError,
    ApiError,
    AsyncCheckinOffersClient,
    AuthenticationError,
    CheckinOffersClient,
    CodeExpiredError,
    NotFoundError,
    OfflineQueue,
    PermissionDeniedError,
    Queued,
    RateLimitedError,
    ValidationError,
)
from tests.factories import offer_body


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def no_sleep(_: float) -> None:
    """Backoff waits are not what these tests are about."""


async def no_async_sleep(_: float) -> None:
    """Backoff waits are not what these tests are about."""


class LosesResponses(httpx.BaseTransport):
    """Sends every request to the server, then drops the first `lose` answers to `path` and raises
    `error` instead, as when the connection breaks after the server has committed."""

    def __init__(self, error: type[httpx.TransportError], lose: int, path: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.error, self.lose, self.path = error, lose, path
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = self.inner.handle_request(request)
        response.read()
        if request.url.path == self.path and self.lose > 0:
            self.lose -= 1
            raise self.error("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncLosesResponses(httpx.AsyncBaseTransport):
    def __init__(self, error: type[httpx.TransportError], lose: int, path: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.error, self.lose, self.path = error, lose, path
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if request.url.path == self.path and self.lose > 0:
            self.lose -= 1
            raise self.error("the answer was lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Offline(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("network is unreachable", request=request)


@dataclass
class Shop:
    merchant_id: str
    venues: list[dict]
    staff_token: str


@pytest.fixture
def shop(world, settings) -> Shop:
    """Three venues 150 m apart with an every_checkin offer: each accepted check-in unlocks one code."""
    merchant = world.merchant()
    lon, lat = world.spot()
    venues = [world.venue(merchant, center=(lon + i * 0.0027, lat), radius_m=40) for i in range(3)]
    world.campaign(merchant, [v["id"] for v in venues], offers=[offer_body(per_user_limit=100)])
    staff = mint_token(settings, sub=f"staff-{uuid.uuid4().hex[:8]}", role="merchant_staff", merchant_id=merchant.id)
    return Shop(merchant.id, venues, staff)


def app_user(settings) -> tuple[str, str]:
    sub = f"sdk-user-{uuid.uuid4().hex[:12]}"
    return sub, mint_token(settings, sub=sub, role="app_user")


def position(venue: dict) -> tuple[float, float]:
    lon, lat = venue["center"]
    return lat, lon


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
def test_lost_checkin_answers_are_retried_under_one_key_and_unlock_once(base_url, settings, db, shop, error):
    sub, token = app_user(settings)
    network = LosesResponses(error, lose=2, path="/v1/checkins")
    with CheckinOffersClient(base_url, lambda: token, transport=network, sleep=no_sleep) as client:
        result = client.checkin(*position(shop.venues[0]), accuracy_m=10)

    assert result.status == "accepted" and len(result.unlocked) == 1
    assert len(network.sent) == 3
    assert len({request.headers["Idempotency-Key"] for request in network.sent}) == 1
    unlocks = db.execute("SELECT code FROM unlocks WHERE user_id = %s", (sub,)).fetchall()
    assert unlocks == [{"code": result.unlocked[0].code}]
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 1


def test_lost_redemption_answer_is_retried_and_redeems_once(base_url, settings, db, shop):
    _, token = app_user(settings)
    with CheckinOffersClient(base_url, lambda: token) as client:
        code = client.checkin(*position(shop.venues[0]), accuracy_m=10).unlocked[0].code
    network = LosesResponses(httpx.ReadTimeout, lose=1, path="/v1/redemptions")
    with CheckinOffersClient(base_url, lambda: shop.staff_token, transport=network, sleep=no_sleep) as till:
        redemption = till.redeem(code, shop.venues[0]["id"])

    assert (
        len(network.sent) == 2
        and network.sent[0].headers["Idempotency-Key"] == network.sent[1].headers["Idempotency-Key"]
    )
    rows = db.execute(
        "SELECT r.id FROM redemptions r JOIN unlocks u ON u.id = r.unlock_id WHERE u.code = %s", (code,)
    ).fetchall()
    assert [str(row["id"]) for row in rows] == [redemption.id]


def test_offline_queue_survives_a_client_restart_and_replays_in_order(base_url, settings, db, shop, tmp_path: Path):
    sub, token = app_user(settings)
    path = tmp_path / "checkins.sqlite3"
    now = datetime.now(UTC)
    observed = [now - timedelta(seconds=s) for s in (95.123456, 60.5, 30.25)]
    with CheckinOffersClient(
        base_url, lambda: token, transport=Offline(), queue=OfflineQueue(path), sleep=no_sleep
    ) as phone:
        queued = [
            phone.checkin_or_queue(*position(venue), accuracy_m=8, observed_at=at)
            for venue, at in zip(shop.venues, observed, strict=True)
        ]
    assert all(isinstance(item, Queued) for item in queued)
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 0

    # The app restarts: a new client on the same file, now online.
    with CheckinOffersClient(base_url, lambda: token, queue=OfflineQueue(path)) as phone:
        replayed = phone.replay_queue()

    assert [item.request.observed_at for item, _ in replayed] == observed
    assert [outcome.status for _, outcome in replayed] == ["accepted"] * 3
    assert all(len(outcome.unlocked) == 1 for _, outcome in replayed)
    rows = db.execute(
        "SELECT observed_at, venue_id FROM checkins WHERE user_id = %s ORDER BY received_at", (sub,)
    ).fetchall()
    assert [row["observed_at"] for row in rows] == observed
    assert [str(row["venue_id"]) for row in rows] == [venue["id"] for venue in shop.venues]
    assert len(OfflineQueue(path)) == 0


@dataclass
class ProblemCase:
    token: str
    method: str
    args: tuple
    error: type[ApiError]
    status: int
    code: str


def problem_case(kind: str, base_url: str, settings, db, world, shop: Shop) -> ProblemCase:
    """A request that makes the server answer with the problem `kind`, set up through the real service."""
    _, token = app_user(settings)
    venue_id = shop.venues[0]["id"]
    if kind == "invalid_token":
        return ProblemCase("not-a-jwt", "wallet", (), AuthenticationError, 401, "invalid_token")
    if kind == "forbidden_role":
        return ProblemCase(token, "redeem", ("AAAA-BBBB-CCCC", venue_id), PermissionDeniedError, 403, "forbidden_role")
    if kind == "not_found":
        return ProblemCase(shop.staff_token, "redeem", ("AAAA-BBBB-CCCC", venue_id), NotFoundError, 404, "not_found")
    if kind == "validation_error":
        return ProblemCase(token, "checkin", (91.0, 10.0, 10.0), ValidationError, 422, "validation_error")
    if kind == "rate_limited":
        lon, lat = world.spot()
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(settings.checkin_rate_per_minute):
            assert world.checkin(headers, lon, lat).status_code == 201
        return ProblemCase(token, "checkin", (lat, lon, 10.0), RateLimitedError, 429, "rate_limited")
    with CheckinOffersClient(base_url, lambda: token) as client:
        code = client.checkin(*position(shop.venues[0]), accuracy_m=10).unlocked[0].code
    if kind == "already_redeemed":
        with CheckinOffersClient(base_url, lambda: shop.staff_token) as till:
            till.redeem(code, venue_id)
        return ProblemCase(shop.staff_token, "redeem", (code, venue_id), AlreadyRedeemedError, 409, "already_redeemed")
    assert kind == "expired"
    db.execute("UPDATE unlocks SET expires_at = now() - interval '1 minute' WHERE code = %s", (code,))
    return ProblemCase(shop.staff_token, "redeem", (code, venue_id), CodeExpiredError, 410, "expired")


PROBLEMS = [
    "invalid_token",
    "forbidden_role",
    "not_found",
    "already_redeemed",
    "expired",
    "validation_error",
    "rate_limited",
]


def check_error(error: ApiError, case: ProblemCase) -> None:
    assert type(error) is case.error
    assert (error.status, error.code) == (case.status, case.code)
    assert error.problem["status"] == case.status and error.detail
    if case.code == "validation_error":
        assert [field.field for field in error.errors] == ["lat"]
    if case.code == "rate_limited":
        assert error.retry_after is not None and error.retry_after > 0


@pytest.mark.parametrize("kind", PROBLEMS)
def test_each_problem_the_server_sends_arrives_as_its_typed_error(kind, base_url, settings, db, world, shop):
    case = problem_case(kind, base_url, settings, db, world, shop)
    tokens_asked = []

    def provider() -> str:
        tokens_asked.append(case.token)
        return case.token

    with CheckinOffersClient(base_url, provider, max_attempts=1) as client, pytest.raises(ApiError) as raised:
        getattr(client, case.method)(*case.args)
    check_error(raised.value, case)
    assert len(tokens_asked) == (2 if case.status == 401 else 1)  # a 401 asks the provider once more


@pytest.mark.anyio
@pytest.mark.parametrize("kind", PROBLEMS)
async def test_the_async_client_raises_the_same_typed_errors(kind, base_url, settings, db, world, shop):
    case = problem_case(kind, base_url, settings, db, world, shop)
    async with AsyncCheckinOffersClient(base_url, lambda: case.token, max_attempts=1) as client:
        with pytest.raises(ApiError) as raised:
            await getattr(client, case.method)(*case.args)
    check_error(raised.value, case)


@pytest.mark.anyio
async def test_async_lost_answers_unlock_once_and_offline_checkins_replay(base_url, settings, db, shop, tmp_path):
    sub, token = app_user(settings)
    network = AsyncLosesResponses(httpx.ConnectError, lose=1, path="/v1/checkins")
    async with AsyncCheckinOffersClient(
        base_url, lambda: token, transport=network, sleep=no_async_sleep, queue=OfflineQueue(tmp_path / "q.sqlite3")
    ) as phone:
        # a minute earlier, so walking on to the next venue is not too fast
        first = await phone.checkin(
            *position(shop.venues[0]), accuracy_m=10, observed_at=datetime.now(UTC) - timedelta(seconds=60)
        )
        network.lose = 5  # offline for a whole call: every attempt's answer is lost, so it is queued
        queued = await phone.checkin_or_queue(*position(shop.venues[1]), accuracy_m=10)
        replayed = await phone.replay_queue()

    assert first.status == "accepted" and len(first.unlocked) == 1
    assert isinstance(queued, Queued)
    assert [(item.request.idempotency_key, outcome.status) for item, outcome in replayed] == [
        (queued.request.idempotency_key, "accepted")
    ]
    # The queued check-in reached the server on every lost attempt, yet counts once.
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 2
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE user_id = %s", (sub,)).fetchone()["n"] == 2


def test_the_wallet_pages_through_every_offer_newest_first(base_url, settings, db, shop, monkeypatch):
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    sub, token = app_user(settings)
    with CheckinOffersClient(base_url, lambda: token) as phone:
        for _ in range(5):
            assert phone.checkin(*position(shop.venues[0]), accuracy_m=10).status == "accepted"
        first = phone.wallet_page(limit=2)
        offers = list(phone.iter_wallet(page_size=2))
        everything = phone.wallet()

    newest_first = db.execute(
        "SELECT id FROM unlocks WHERE user_id = %s ORDER BY unlocked_at DESC, id DESC", (sub,)
    ).fetchall()
    assert [offer.unlock_id for offer in offers] == [str(row["id"]) for row in newest_first]
    assert len(offers) == 5 and everything == offers
    assert [offer.unlock_id for offer in first.items] == [offer.unlock_id for offer in offers[:2]]
    assert first.next_cursor is not None


@pytest.mark.anyio
async def test_the_async_wallet_pages_the_same_way(base_url, settings, shop, monkeypatch):
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    _, token = app_user(settings)
    async with AsyncCheckinOffersClient(base_url, lambda: token) as phone:
        for _ in range(3):
            assert (await phone.checkin(*position(shop.venues[0]), accuracy_m=10)).status == "accepted"
        offers = [offer async for offer in phone.iter_wallet(page_size=2)]
        last = await phone.wallet_page(limit=3)

    assert len({offer.unlock_id for offer in offers}) == 3
    assert [offer.unlock_id for offer in last.items] == [offer.unlock_id for offer in offers]
    assert last.next_cursor is None


def test_a_person_exports_then_erases_their_data_and_the_offline_queue_goes_too(base_url, settings, db, shop, tmp_path):
    sub, token = app_user(settings)
    queue = OfflineQueue(tmp_path / "checkins.sqlite3")
    with CheckinOffersClient(base_url, lambda: token, queue=queue) as phone:
        result = phone.checkin(*position(shop.venues[0]), accuracy_m=8)
        with CheckinOffersClient(base_url, lambda: token, transport=Offline(), queue=queue, sleep=no_sleep) as offline:
            assert isinstance(offline.checkin_or_queue(*position(shop.venues[1]), accuracy_m=8), Queued)

        export = phone.export_my_data()
        assert [c["id"] for c in export["checkins"]["items"]] == [result.id]
        assert [u["code"] for u in export["unlocks"]] == [result.unlocked[0].code]

        receipt = phone.erase_me()
        assert set(receipt) >= {"id", "requested_at", "completed_at"}
        assert len(queue) == 0  # a replay must not bring the person back
        assert phone.erase_me()["id"] == receipt["id"]  # asking again answers the same receipt
        assert phone.export_my_data()["checkins"]["items"] == []
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 0
