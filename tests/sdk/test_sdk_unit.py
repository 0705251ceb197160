"""Unit tests for mobile_sdk against a scripted HTTP peer (httpx.MockTransport).

The peer answers each request with the next scripted outcome (a response, or an exception raised
as a network failure) and records what it was sent, so tests can check retries, idempotency keys
and replay order without a server.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mobile_sdk import (
    AlreadyRedeemedError,
    ApiError,
    AsyncCheckinOffersClient,
    AuthenticationError,
    CheckinOffersClient,
    CheckinOffersError,
    CheckinResult,
    CodeExpiredError,
    ConflictError,
    FieldError,
    NotFoundError,
    OfflineQueue,
    PermissionDeniedError,
    Queued,
    RateLimitedError,
    ServerError,
    TransportError,
    UnlockedOffer,
    ValidationError,
    Venue,
)

BASE_URL = "http://sdk.test"
Outcome = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class MaxJitter(random.Random):
    """Always picks the top of the jitter range, so backoff waits are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Peer:
    """Scripted server: answers requests with `outcomes` in turn, repeating the last one."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.outcomes)) - 1
        outcome = self.outcomes[index]
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, httpx.Response):
            return outcome
        return outcome(request)

    @property
    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("network is unreachable")


def problem(status: int, code: str, headers: dict[str, str] | None = None, **extra: Any):
    body = {
        "type": "about:blank",
        "title": code,
        "status": status,
        "detail": f"{code}!",
        "code": code,
    }
    return httpx.Response(
        status,
        content=json.dumps(body | extra),
        headers={"Content-Type": "application/problem+json", **(headers or {})},
    )


def checkin_response(status: str = "accepted", reason: str | None = None, **extra: Any):
    body = {
        "id": "chk-1",
        "status": status,
        "reason": reason,
        "detail": None,
        "venue": {"id": "ven-1", "name": "Blue Bottle"} if status == "accepted" else None,
        "unlocked": [],
    }
    return httpx.Response(201, json=body | extra)


def echo_checkin(request: httpx.Request) -> httpx.Response:
    """Accepts any check-in, naming it after its idempotency key."""
    return checkin_response(id=request.headers["Idempotency-Key"])


def sync_client(peer: Peer, sleeps: list[float], **kwargs: Any) -> CheckinOffersClient:
    return CheckinOffersClient(
        BASE_URL,
        lambda: "jwt",
        transport=httpx.MockTransport(peer),
        sleep=sleeps.append,
        rng=MaxJitter(),
        **kwargs,
    )


def async_client(peer: Peer, sleeps: list[float], **kwargs: Any) -> AsyncCheckinOffersClient:
    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return AsyncCheckinOffersClient(
        BASE_URL,
        lambda: "jwt",
        transport=httpx.MockTransport(peer),
        sleep=record_sleep,
        rng=MaxJitter(),
        **kwargs,
    )


# --- requests and results -------------------------------------------------------------------


def test_checkin_sends_body_and_headers_and_parses_result() -> None:
    observed = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    offer = {
        "unlock_id": "unl-1",
        "offer_id": "off-1",
        "title": "Free cookie",
        "description": "With any coffee",
        "terms": None,
        "code": "ABCD-1234",
        "expires_at": "2024-05-02T09:30:00+00:00",
    }
    peer = Peer(checkin_response(unlocked=[offer]))
    with sync_client(peer, []) as client:
        result = client.checkin(52.52, 13.405, 12.5, observed_at=observed, venue_id="ven-1")

    assert result == CheckinResult(
        id="chk-1",
        status="accepted",
        reason=None,
        detail=None,
        venue=Venue(id="ven-1", name="Blue Bottle"),
        unlocked=(
            UnlockedOffer(
                unlock_id="unl-1",
                offer_id="off-1",
                title="Free cookie",
                description="With any coffee",
                terms=None,
                code="ABCD-1234",
                expires_at=datetime(2024, 5, 2, 9, 30, tzinfo=UTC),
            ),
        ),
    )
    (request,) = peer.requests
    assert request.method == "POST" and request.url.path == "/v1/checkins"
    assert request.headers["Authorization"] == "Bearer jwt"
    assert uuid.UUID(request.headers["Idempotency-Key"]).version == 4
    assert peer.bodies == [
        {
            "lat": 52.52,
            "lon": 13.405,
            "accuracy_m": 12.5,
            "observed_at": "2024-05-01T09:30:15.123456+02:00",
            "venue_id": "ven-1",
        }
    ]


def test_checkin_defaults_observed_at_to_now_in_utc() -> None:
    peer = Peer(checkin_response())
    before = datetime.now(UTC)
    with sync_client(peer, []) as client:
        client.checkin(1.0, 2.0, 5.0, mocked=False)

    (body,) = peer.bodies
    observed = datetime.fromisoformat(body["observed_at"])
    assert observed.utcoffset() == timedelta(0)
    assert before <= observed <= datetime.now(UTC)
    assert body["mocked"] is False


def test_checkin_refuses_naive_observed_at_without_sending() -> None:
    peer = Peer(checkin_response())
    with sync_client(peer, []) as client, pytest.raises(ValueError, match="timezone-aware"):
        client.checkin(1.0, 2.0, 5.0, observed_at=datetime(2024, 5, 1, 9, 30))
    assert peer.requests == []


def test_each_logical_checkin_gets_its_own_key() -> None:
    peer = Peer(checkin_response())
    with sync_client(peer, []) as client:
        client.checkin(1.0, 2.0, 5.0)
        client.checkin(1.0, 2.0, 5.0)
    assert len(set(peer.keys)) == 2


def test_wallet_nearby_redeem_and_stats() -> None:
    wallet = {
        "items": [
            {
                "unlock_id": "unl-1",
                "offer_id": "off-1",
                "title": "Free cookie",
                "description": None,
                "terms": "One per visit",
                "code": "ABCD-1234",
                "status": "active",
                "expires_at": "2024-05-02T09:30:00Z",
                "venue": {"id": "ven-1", "name": "Blue Bottle"},
            }
        ]
    }
    nearby = {"items": [{"id": "ven-1", "name": "Blue Bottle", "distance_m": 42, "has_checkin_offer": True}]}
    redemption = {
        "id": "red-1",
        "unlock_id": "unl-1",
        "offer_id": "off-1",
        "venue_id": "ven-1",
        "redeemed_at": "2024-05-01T10:00:00+00:00",
        "title": "Free cinnamon bun",
        "terms": "One per visit",
    }
    stats = {"campaign_id": "cmp/1", "uplift": 0.12}
    routes = {
        "/v1/me/offers": wallet,
        "/v1/venues/nearby": nearby,
        "/v1/redemptions": redemption,
        "/v1/campaigns/cmp%2F1/stats": stats,
    }
    peer = Peer(lambda request: httpx.Response(200, json=routes[request.url.raw_path.split(b"?")[0].decode()]))

    with sync_client(peer, []) as client:
        (offer,) = client.wallet()
        (venue,) = client.nearby(52.5, 13.4, radius_m=250)
        receipt = client.redeem("ABCD-1234", "ven-1")
        assert client.campaign_stats("cmp/1") == stats

    assert offer.status == "active" and offer.venue == Venue("ven-1", "Blue Bottle")
    assert offer.expires_at == datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
    assert venue.distance_m == 42.0 and venue.has_checkin_offer is True
    assert receipt.redeemed_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert (receipt.title, receipt.terms) == ("Free cinnamon bun", "One per visit")
    nearby_request, redeem_request = peer.requests[1], peer.requests[2]
    assert dict(nearby_request.url.params) == {"lat": "52.5", "lon": "13.4", "radius_m": "250"}
    assert json.loads(redeem_request.content) == {"code": "ABCD-1234", "venue_id": "ven-1"}
    assert uuid.UUID(redeem_request.headers["Idempotency-Key"]).version == 4


def test_unparseable_success_raises_sdk_error() -> None:
    peer = Peer(httpx.Response(200, json={"unexpected": True}))
    with sync_client(peer, []) as client, pytest.raises(CheckinOffersError, match="/v1/me/offers"):
        client.wallet()


def wallet_item(n: int) -> dict[str, Any]:
    return {
        "unlock_id": f"unl-{n}",
        "offer_id": "off-1",
        "title": f"Offer {n}",
        "description": None,
        "terms": None,
        "code": f"CODE-{n:04d}",
        "status": "active",
        "expires_at": None,
        "venue": {"id": "ven-1", "name": "Blue Bottle"},
    }


def paged_wallet(pages: int, per_page: int = 2) -> Callable[[httpx.Request], httpx.Response]:
    """A server whose wallet holds `pages` pages; the cursor of page i is "c<i>"."""

    def answer(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        index = 0 if cursor is None else int(cursor.removeprefix("c"))
        items = [wallet_item(index * per_page + n) for n in range(per_page)]
        next_cursor = f"c{index + 1}" if index + 1 < pages else None
        return httpx.Response(200, json={"items": items, "next_cursor": next_cursor})

    return answer


def test_wallet_page_sends_cursor_and_limit_and_reads_next_cursor() -> None:
    peer = Peer(paged_wallet(pages=3))
    with sync_client(peer, []) as client:
        first = client.wallet_page(limit=2)
        second = client.wallet_page(first.next_cursor, limit=2)
        last = client.wallet_page("c2")

    assert [o.unlock_id for o in first.items] == ["unl-0", "unl-1"] and first.next_cursor == "c1"
    assert [o.unlock_id for o in second.items] == ["unl-2", "unl-3"] and second.next_cursor == "c2"
    assert last.next_cursor is None
    assert [dict(r.url.params) for r in peer.requests] == [
        {"limit": "2"},
        {"cursor": "c1", "limit": "2"},
        {"cursor": "c2"},
    ]


def test_iter_wallet_follows_the_cursor_lazily_to_the_last_page() -> None:
    peer = Peer(paged_wallet(pages=3))
    with sync_client(peer, []) as client:
        offers = client.iter_wallet(page_size=2)
        assert next(offers).unlock_id == "unl-0"
        assert len(peer.requests) == 1  # later pages only when iteration reaches them
        rest = list(offers)
        everything = client.wallet()

    assert [o.unlock_id for o in rest] == [f"unl-{n}" for n in range(1, 6)]
    assert [o.unlock_id for o in everything] == [f"unl-{n}" for n in range(6)]
    assert [r.url.params.get("cursor") for r in peer.requests] == [None, "c1", "c2", None, "c1", "c2"]


def test_a_failed_page_is_retried_with_its_cursor() -> None:
    pages = paged_wallet(pages=2)
    peer = Peer(pages, problem(503, "service_unavailable"), pages)
    sleeps: list[float] = []
    with sync_client(peer, sleeps) as client:
        offers = list(client.iter_wallet())

    assert [o.unlock_id for o in offers] == [f"unl-{n}" for n in range(4)]
    assert [r.url.params.get("cursor") for r in peer.requests] == [None, "c1", "c1"] and len(sleeps) == 1


# --- retries --------------------------------------------------------------------------------


def test_retries_reuse_the_idempotency_key_and_body() -> None:
    peer = Peer(
        connect_error(),
        problem(503, "service_unavailable"),
        problem(429, "rate_limited", {"Retry-After": "2"}),
        problem(409, "idempotency_in_progress"),
        checkin_response(),
    )
    sleeps: list[float] = []
    with sync_client(peer, sleeps) as client:
        result = client.checkin(1.0, 2.0, 5.0)

    assert result.status == "accepted"
    assert len(peer.requests) == 5
    assert len(set(peer.keys)) == 1
    assert all(body == peer.bodies[0] for body in peer.bodies)
    # Backoff ceilings 0.2 and 0.4, then Retry-After exactly, then the 4th ceiling 1.6.
    assert sleeps == [0.2, 0.4, 2.0, 1.6]


def test_backoff_doubles_up_to_the_cap_then_gives_up_with_transport_error() -> None:
    peer = Peer(connect_error())
    sleeps: list[float] = []
    with sync_client(peer, sleeps, max_attempts=8) as client, pytest.raises(TransportError) as info:
        client.checkin(1.0, 2.0, 5.0)

    assert len(peer.requests) == 8
    assert sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_jitter_is_drawn_from_the_injected_rng() -> None:
    peer = Peer(connect_error())
    sleeps: list[float] = []
    client = CheckinOffersClient(
        BASE_URL,
        lambda: "jwt",
        transport=httpx.MockTransport(peer),
        sleep=sleeps.append,
        rng=random.Random(7),
    )
    with client, pytest.raises(TransportError):
        client.checkin(1.0, 2.0, 5.0)

    expected_rng = random.Random(7)
    ceilings = [0.2, 0.4, 0.8, 1.6]
    assert sleeps == [expected_rng.uniform(0.0, ceiling) for ceiling in ceilings]


def test_default_is_five_attempts_then_server_error() -> None:
    peer = Peer(problem(503, "service_unavailable"))
    sleeps: list[float] = []
    with sync_client(peer, sleeps) as client, pytest.raises(ServerError) as info:
        client.checkin(1.0, 2.0, 5.0)

    assert len(peer.requests) == 5
    assert len(sleeps) == 4
    assert info.value.status == 503 and info.value.code == "service_unavailable"


def test_retry_after_as_http_date_is_honoured() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    peer = Peer(problem(503, "service_unavailable", {"Retry-After": when}), checkin_response())
    sleeps: list[float] = []
    with sync_client(peer, sleeps) as client:
        client.checkin(1.0, 2.0, 5.0)

    (slept,) = sleeps
    assert 1.5 < slept <= 3.0


def test_retry_after_beyond_the_cap_is_raised_instead_of_slept() -> None:
    peer = Peer(problem(429, "rate_limited", {"Retry-After": "60"}, retry_after=60))
    sleeps: list[float] = []
    with sync_client(peer, sleeps) as client, pytest.raises(RateLimitedError) as info:
        client.checkin(1.0, 2.0, 5.0)

    assert info.value.retry_after == 60.0
    assert len(peer.requests) == 1 and sleeps == []


def test_validation_error_is_not_retried() -> None:
    errors = [{"field": "accuracy_m", "code": "too_large", "message": "accuracy_m must be <= 500"}]
    peer = Peer(problem(422, "validation_error", errors=errors))
    sleeps: list[float] = []
    with sync_client(peer, sleeps) as client, pytest.raises(ValidationError) as info:
        client.checkin(1.0, 2.0, 9000.0)

    assert len(peer.requests) == 1 and sleeps == []
    assert info.value.errors == (FieldError("accuracy_m", "too_large", "accuracy_m must be <= 500"),)
    assert info.value.problem["errors"] == errors


def test_401_asks_the_token_provider_again_and_retries_once() -> None:
    tokens = iter(["expired", "fresh"])
    peer = Peer(problem(401, "unauthorized"), checkin_response())
    sleeps: list[float] = []
    client = CheckinOffersClient(
        BASE_URL, lambda: next(tokens), transport=httpx.MockTransport(peer), sleep=sleeps.append
    )
    with client:
        client.checkin(1.0, 2.0, 5.0)

    assert [r.headers["Authorization"] for r in peer.requests] == ["Bearer expired", "Bearer fresh"]
    assert len(set(peer.keys)) == 1 and sleeps == []


def test_second_401_raises_authentication_error() -> None:
    peer = Peer(problem(401, "unauthorized"))
    with sync_client(peer, []) as client, pytest.raises(AuthenticationError):
        client.wallet()
    assert len(peer.requests) == 2


# --- error mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error_class", "code"),
    [
        (problem(400, "bad_request"), ApiError, "bad_request"),
        (problem(401, "unauthorized"), AuthenticationError, "unauthorized"),
        (problem(403, "forbidden"), PermissionDeniedError, "forbidden"),
        (problem(404, "not_found"), NotFoundError, "not_found"),
        (problem(409, "already_redeemed"), AlreadyRedeemedError, "already_redeemed"),
        (problem(409, "conflict"), ConflictError, "conflict"),
        (problem(409, "idempotency_in_progress"), ConflictError, "idempotency_in_progress"),
        (problem(410, "expired"), CodeExpiredError, "expired"),
        (problem(413, "payload_too_large"), ApiError, "payload_too_large"),
        (problem(422, "validation_error"), ValidationError, "validation_error"),
        (problem(422, "idempotency_key_reused"), ValidationError, "idempotency_key_reused"),
        (problem(429, "rate_limited", {"Retry-After": "1"}), RateLimitedError, "rate_limited"),
        (problem(500, "internal_error"), ServerError, "internal_error"),
        (problem(503, "service_unavailable"), ServerError, "service_unavailable"),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), ServerError, None),
    ],
)
def test_problem_responses_map_to_typed_errors(
    response: httpx.Response, error_class: type[ApiError], code: str | None
) -> None:
    peer = Peer(response)
    with sync_client(peer, [], max_attempts=1) as client, pytest.raises(ApiError) as info:
        client.redeem("ABCD-1234", "ven-1")

    error = info.value
    assert type(error) is error_class
    assert isinstance(error, CheckinOffersError)
    assert error.status == response.status_code and error.code == code
    if code is None:
        assert error.detail == "Bad Gateway" and error.problem == {}
    else:
        assert error.detail == f"{code}!" and error.problem["code"] == code


def test_rate_limited_error_carries_retry_after() -> None:
    peer = Peer(problem(429, "rate_limited", {"Retry-After": "3"}))
    sleeps: list[float] = []
    with (
        sync_client(peer, sleeps, max_attempts=2) as client,
        pytest.raises(RateLimitedError) as info,
    ):
        client.redeem("ABCD-1234", "ven-1")
    assert info.value.retry_after == 3.0 and sleeps == [3.0]


# --- offline queue --------------------------------------------------------------------------


def queue_offline(path: Path, *observed: datetime) -> tuple[list[Queued], Peer]:
    """Check in once per `observed` time with the network down; the peer saw the attempts."""
    peer = Peer(connect_error())
    queued: list[Queued] = []
    with sync_client(peer, [], max_attempts=2, queue=OfflineQueue(path)) as client:
        for when in observed:
            item = client.checkin_or_queue(1.0, 2.0, 5.0, observed_at=when)
            assert isinstance(item, Queued)
            queued.append(item)
    return queued, peer


T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def test_queue_survives_restart_and_replays_fifo_with_original_time_and_key(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    # Queued out of observed_at order: replay must follow queueing order, not observed time.
    observed = [T0, T0 - timedelta(hours=1), T0.astimezone(timezone(timedelta(hours=-5)))]
    queued, offline_peer = queue_offline(path, *observed)
    first_attempts = offline_peer.requests[::2]  # two attempts per check-in

    online_peer = Peer(echo_checkin)
    with sync_client(online_peer, [], queue=OfflineQueue(path)) as client:
        replayed = client.replay_queue()

    assert [item for item, _ in replayed] == queued
    assert [result.id for _, result in replayed] == [item.request.idempotency_key for item in queued]
    assert [item.request.observed_at for item in queued] == observed
    assert online_peer.keys == [request.headers["Idempotency-Key"] for request in first_attempts]
    # Byte-identical bodies: the server must see a replay, not a reused key with a new body.
    assert [r.content for r in online_peer.requests] == [r.content for r in first_attempts]
    assert len(OfflineQueue(path)) == 0


def test_replay_stops_at_first_transport_failure_keeping_order(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    queued, _ = queue_offline(path, T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))

    flaky_peer = Peer(echo_checkin, connect_error())
    with sync_client(flaky_peer, [], max_attempts=1, queue=OfflineQueue(path)) as client:
        replayed = client.replay_queue()
    assert [item for item, _ in replayed] == queued[:1]
    assert OfflineQueue(path).items() == queued[1:]

    online_peer = Peer(echo_checkin)
    with sync_client(online_peer, [], queue=OfflineQueue(path)) as client:
        replayed = client.replay_queue()
    assert [item for item, _ in replayed] == queued[1:]
    assert online_peer.keys == [item.request.idempotency_key for item in queued[1:]]


def test_replay_reports_stale_rejection_and_drops_it(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    (queued,), _ = queue_offline(path, T0)

    peer = Peer(checkin_response(status="rejected", reason="stale"))
    with sync_client(peer, [], queue=OfflineQueue(path)) as client:
        ((item, result),) = client.replay_queue()
        assert client.replay_queue() == []

    assert item == queued
    assert isinstance(result, CheckinResult)
    assert (result.status, result.reason) == ("rejected", "stale")
    assert len(peer.requests) == 1


def test_replay_drops_client_errors_but_keeps_transient_ones(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    queued, _ = queue_offline(path, T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))

    peer = Peer(problem(422, "idempotency_key_reused"), problem(503, "service_unavailable"))
    with sync_client(peer, [], max_attempts=1, queue=OfflineQueue(path)) as client:
        ((item, error),) = client.replay_queue()

    assert item == queued[0]
    assert isinstance(error, ValidationError) and error.code == "idempotency_key_reused"
    assert OfflineQueue(path).items() == queued[1:]


@pytest.mark.parametrize(
    "response",
    [
        problem(401, "unauthorized"),
        problem(409, "idempotency_in_progress"),
        problem(429, "rate_limited", {"Retry-After": "1"}),
    ],
)
def test_replay_keeps_items_the_server_cannot_answer_yet(tmp_path: Path, response: httpx.Response) -> None:
    path = tmp_path / "queue.sqlite3"
    queued, _ = queue_offline(path, T0)

    with sync_client(Peer(response), [], max_attempts=2, queue=OfflineQueue(path)) as client:
        assert client.replay_queue() == []
    assert OfflineQueue(path).items() == queued


def test_checkin_or_queue_sends_when_online_and_raises_api_errors(tmp_path: Path) -> None:
    queue = OfflineQueue(tmp_path / "queue.sqlite3")
    peer = Peer(checkin_response(), problem(422, "validation_error"))
    with sync_client(peer, [], queue=queue) as client:
        assert isinstance(client.checkin_or_queue(1.0, 2.0, 5.0), CheckinResult)
        with pytest.raises(ValidationError):
            client.checkin_or_queue(1.0, 2.0, 5000.0)
    assert len(queue) == 0


def test_queue_methods_need_a_queue() -> None:
    peer = Peer(checkin_response())
    with sync_client(peer, []) as client, pytest.raises(RuntimeError, match="OfflineQueue"):
        client.checkin_or_queue(1.0, 2.0, 5.0)
    assert peer.requests == []


# --- async client ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_retries_reuse_the_idempotency_key() -> None:
    peer = Peer(
        connect_error(),
        problem(503, "service_unavailable"),
        problem(429, "rate_limited", {"Retry-After": "2"}),
        problem(409, "idempotency_in_progress"),
        checkin_response(),
    )
    sleeps: list[float] = []
    async with async_client(peer, sleeps) as client:
        result = await client.checkin(1.0, 2.0, 5.0)

    assert result.status == "accepted"
    assert len(peer.requests) == 5 and len(set(peer.keys)) == 1
    assert sleeps == [0.2, 0.4, 2.0, 1.6]


@pytest.mark.anyio
async def test_async_gives_up_after_max_attempts() -> None:
    peer = Peer(connect_error())
    sleeps: list[float] = []
    async with async_client(peer, sleeps, max_attempts=3) as client:
        with pytest.raises(TransportError):
            await client.checkin(1.0, 2.0, 5.0)
    assert len(peer.requests) == 3 and sleeps == [0.2, 0.4]


@pytest.mark.anyio
async def test_async_token_provider_may_be_a_coroutine() -> None:
    tokens = iter(["expired", "fresh"])

    async def token_provider() -> str:
        return next(tokens)

    peer = Peer(problem(401, "unauthorized"), httpx.Response(200, json={"items": []}))
    client = AsyncCheckinOffersClient(BASE_URL, token_provider, transport=httpx.MockTransport(peer))
    async with client:
        assert await client.wallet() == []
    assert [r.headers["Authorization"] for r in peer.requests] == ["Bearer expired", "Bearer fresh"]


@pytest.mark.anyio
async def test_async_queue_and_replay(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    async with async_client(Peer(connect_error()), [], queue=OfflineQueue(path)) as client:
        first = await client.checkin_or_queue(1.0, 2.0, 5.0, observed_at=T0)
        second = await client.checkin_or_queue(1.0, 2.0, 5.0, observed_at=T0 - timedelta(hours=1))
    assert isinstance(first, Queued) and isinstance(second, Queued)

    peer = Peer(echo_checkin, checkin_response(status="rejected", reason="stale"))
    async with async_client(peer, [], queue=OfflineQueue(path)) as client:
        replayed = await client.replay_queue()

    assert [item for item, _ in replayed] == [first, second]
    assert [body["observed_at"] for body in peer.bodies] == [
        T0.isoformat(),
        (T0 - timedelta(hours=1)).isoformat(),
    ]
    stale = replayed[1][1]
    assert isinstance(stale, CheckinResult) and stale.reason == "stale"
    assert len(OfflineQueue(path)) == 0


@pytest.mark.anyio
async def test_async_wallet_pages_and_iteration() -> None:
    peer = Peer(paged_wallet(pages=3))
    async with async_client(peer, []) as client:
        page = await client.wallet_page(limit=2)
        offers = [offer.unlock_id async for offer in client.iter_wallet(page_size=2)]
        everything = await client.wallet()

    assert page.next_cursor == "c1" and [o.unlock_id for o in page.items] == ["unl-0", "unl-1"]
    assert offers == [o.unlock_id for o in everything] == [f"unl-{n}" for n in range(6)]
    assert [r.url.params.get("cursor") for r in peer.requests] == [None, None, "c1", "c2", None, "c1", "c2"]
